/**
 * yamux (hashicorp/yamux spec.md) for the relay's agent connections: one TLS
 * connection carries many streams, each a Node Duplex.
 */
export { Session, diagnostics } from './session.js';
export type { SessionCloseEvent, SessionEvents, SessionOptions } from './session.js';
export { Stream } from './stream.js';
export {
  YamuxError,
  YamuxProtocolError,
  YamuxRemoteError,
  YamuxStreamResetError,
} from './errors.js';
export type { YamuxErrorCode } from './errors.js';
