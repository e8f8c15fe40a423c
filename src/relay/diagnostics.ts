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
  /** ACME (./acme/): an order for a certificate began: AcmeOrderStartedEvent. */
  acmeOrderStarted: channel('warren:relay:acme-order-started'),
  /** ACME: a certificate was issued and stored: AcmeCertificateEvent. */
  acmeCertificateIssued: channel('warren:relay:acme-certificate-issued'),
  /** ACME: a stored certificate was read back at start: AcmeCertificateEvent. */
  acmeCertificateLoaded: channel('warren:relay:acme-certificate-loaded'),
  /** ACME: an order failed; the name backs off: AcmeOrderFailedEvent. */
  acmeOrderFailed: channel('warren:relay:acme-order-failed'),
  /** ACME: a certificate was asked for a name the relay does not serve: AcmeHostRefusedEvent. */
  acmeHostRefused: channel('warren:relay:acme-host-refused'),
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

/** Why an ACME order was placed. */
export type AcmeOrderReason = 'new' | 'renewal' | 'expired';

export interface AcmeOrderStartedEvent {
  readonly host: string;
  readonly reason: AcmeOrderReason;
}

export interface AcmeCertificateEvent {
  readonly host: string;
  /** Validity of the certificate (ms since the epoch). */
  readonly notBefore: number;
  readonly notAfter: number;
  /** When it will be renewed (ms since the epoch). */
  readonly renewAt: number;
  /** Issued: why it was ordered; loaded: undefined. */
  readonly reason: AcmeOrderReason | undefined;
  /** Issued: how long the order took (ms); loaded: 0. */
  readonly durationMs: number;
}

export interface AcmeOrderFailedEvent {
  readonly host: string;
  readonly reason: AcmeOrderReason;
  readonly error: RelayError;
  /** Consecutive failures for this name. */
  readonly failures: number;
  /** No new order for this name before this time (ms since the epoch). */
  readonly retryAt: number;
}

export interface AcmeHostRefusedEvent {
  readonly host: string;
  readonly error: RelayError;
}

export interface AgentStreamErrorEvent {
  readonly tunnelId: string;
  readonly error: Error;
}
