/**
 * diagnostics_channel events of the relay and the agent. Library code never
 * logs: the CLI (and later the dashboard and metrics) subscribe here.
 * Messages are published only when someone subscribed (hasSubscribers).
 */
import { channel } from 'node:diagnostics_channel';
import type { RelayError } from './errors.js';

export const relayDiagnostics = {
  /** An agent authenticated: AgentConnectedEvent. */
  agentConnected: channel('warren:relay:agent-connected'),
  /** An agent's session ended: AgentDisconnectedEvent. */
  agentDisconnected: channel('warren:relay:agent-disconnected'),
  /** An agent connection was refused before or during authentication: AgentRejectedEvent. */
  agentRejected: channel('warren:relay:agent-rejected'),
  /** A tunnel was registered: TunnelEvent. */
  tunnelOpened: channel('warren:relay:tunnel-opened'),
  /** A tunnel was removed: TunnelEvent. */
  tunnelClosed: channel('warren:relay:tunnel-closed'),
  /** A public request or connection was refused by the relay itself: PublicRefusalEvent. */
  publicRefused: channel('warren:relay:public-refused'),
};

export const agentDiagnostics = {
  /** A stream could not be served (preamble, local connection): AgentStreamErrorEvent. */
  streamError: channel('warren:expose:stream-error'),
};

export interface AgentConnectedEvent {
  readonly sessionId: string;
  readonly remoteAddress: string;
  readonly tokenId: string;
  readonly tokenName: string;
}

export interface AgentDisconnectedEvent {
  readonly sessionId: string;
  readonly error: Error | undefined;
}

export interface AgentRejectedEvent {
  readonly remoteAddress: string;
  readonly error: Error;
}

export interface TunnelEvent {
  readonly sessionId: string;
  readonly tunnelId: string;
  readonly proto: 'http' | 'tcp';
  /** Subdomain (http) or port (tcp). */
  readonly name: string;
  readonly url: string;
}

export interface PublicRefusalEvent {
  readonly listener: 'http' | 'https' | 'tcp';
  readonly remoteAddress: string;
  /** HTTP status sent, or 0 when the connection was just closed. */
  readonly status: number;
  readonly error: RelayError;
}

export interface AgentStreamErrorEvent {
  readonly tunnelId: string;
  readonly error: Error;
}
