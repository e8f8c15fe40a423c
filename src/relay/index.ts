/**
 * `warren relay` / `warren expose`: an ngrok-style public HTTP/TCP tunnel over
 * TLS (issue 4). The relay (./relay.ts) accepts agents and public traffic; the
 * agent (./agent.ts) connects out and serves local ports; both speak yamux
 * (./mux/) with a small control protocol (./control.ts) and capability tokens
 * (./token.ts, ./secret.ts), with accounts, token records and custom domains
 * in a store (./store/: SQLite by default, PostgreSQL optional).
 */
export { Agent } from './agent.js';
export type {
  AgentEvents,
  AgentOptions,
  ReconnectOptions,
  TunnelSpec,
  TunnelState,
  TunnelStatus,
} from './agent.js';
export { AGENT_ALPN, DEFAULT_RELAY_LIMITS, Relay } from './relay.js';
export type { ListenAddress, RelayLimits, RelayOptions, SessionInfo, TunnelInfo } from './relay.js';
export { ensureDevCertificate } from './dev-ca.js';
export type { DevCertificate } from './dev-ca.js';
export {
  DEFAULT_ACCOUNT,
  chooseSubdomain,
  createToken,
  isValidAccountName,
  isValidHostName,
  isValidSubdomain,
  isValidSubdomainPattern,
  parseDuration,
  parsePortRange,
  subdomainAllowed,
  tcpPortAllowed,
  verifyToken,
} from './token.js';
export type { NewTokenGrant, PortRange, TokenGrant } from './token.js';
export { SECRET_FILE, loadOrCreateSecret } from './secret.js';
export * from './store/index.js';
export { agentDiagnostics, relayDiagnostics } from './diagnostics.js';
export type * from './diagnostics.js';
export * from './errors.js';
export * from './inspector/index.js';
export * from './dashboard/index.js';
