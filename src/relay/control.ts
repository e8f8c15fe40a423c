/**
 * The relay ↔ agent control protocol.
 *
 * The agent opens the first yamux stream of its session (id 1) as the control
 * stream. Messages on it are frames: a 4-byte big-endian length, then that many
 * bytes of UTF-8 JSON (one object with a `t` type field), at most
 * MAX_CONTROL_MESSAGE bytes. The same framing opens every data stream the relay
 * opens towards the agent: one `stream` preamble saying which tunnel and which
 * client, then the client's bytes.
 *
 *   agent → relay   hello {v, token, agent?}          first message, within the auth timeout
 *                   open  {id, proto: 'http', subdomain? | hostname?, basicAuth?, allowIps?}
 *                       | {id, proto: 'tcp', port?, allowIps?}
 *                   close {tunnel}
 *   relay → agent   welcome {v, session, domain, tokenName, httpPort?, httpsPort?}
 *                   opened  {id, tunnel, proto, url, name? | port?, access?}
 *                           (name: the subdomain, or the custom host name)
 *                   refused {id, code, message}      one tunnel request failed
 *                   error   {code, message}          the session fails; the relay closes it
 *                   shutdown {message}               the relay is going away: reconnect later
 *   data streams    stream {tunnel, proto, remoteAddress, remotePort}
 *
 * Parsing is strict: an unknown type, a missing or mistyped field or an
 * oversized frame is a ControlProtocolError (ERR_RELAY_PROTOCOL). Unknown extra
 * fields are ignored, so later versions can add optional ones.
 */
import {
  BASIC_AUTH_HASH_BYTES,
  BASIC_AUTH_SALT_BYTES,
  MAX_ALLOWED_IPS,
  MAX_BASIC_AUTH_CREDENTIALS,
  checkAllowedIps,
} from './access.js';
import type { BasicAuthHashes } from './access.js';
import { ControlProtocolError, RelayError, isRemoteErrorCode } from './errors.js';
import type { RelayErrorCode } from './errors.js';
import { MAX_HOST_NAME_LENGTH, isValidHostName, isValidSubdomain } from './token.js';

export const CONTROL_PROTOCOL_VERSION = 1;
/** Largest control frame payload: tokens are well below 2 KiB. */
export const MAX_CONTROL_MESSAGE = 16 * 1024;
const LENGTH_PREFIX = 4;

export interface HelloMessage {
  readonly t: 'hello';
  readonly v: number;
  readonly token: string;
  /** Free-form agent software name/version, for the relay's records. */
  readonly agent?: string;
}
export interface OpenHttpMessage {
  readonly t: 'open';
  readonly id: number;
  readonly proto: 'http';
  readonly subdomain?: string;
  /**
   * A custom domain of the token's account ("app.example.org"), verified on
   * the relay, instead of a subdomain of the relay's domain.
   */
  readonly hostname?: string;
  /** Salted hashes of the tunnel's basic-auth credentials (./access.ts); never passwords. */
  readonly basicAuth?: BasicAuthHashes;
  /** CIDRs the public client's real address must be in. */
  readonly allowIps?: readonly string[];
}
export interface OpenTcpMessage {
  readonly t: 'open';
  readonly id: number;
  readonly proto: 'tcp';
  readonly port?: number;
  /** CIDRs the public client's real address must be in. */
  readonly allowIps?: readonly string[];
}
export interface CloseTunnelMessage {
  readonly t: 'close';
  readonly tunnel: string;
}
export type AgentMessage = HelloMessage | OpenHttpMessage | OpenTcpMessage | CloseTunnelMessage;

export interface WelcomeMessage {
  readonly t: 'welcome';
  readonly v: number;
  readonly session: string;
  readonly domain: string;
  readonly tokenName: string;
  readonly httpPort?: number;
  readonly httpsPort?: number;
}
export interface OpenedHttpMessage {
  readonly t: 'opened';
  readonly id: number;
  readonly tunnel: string;
  readonly proto: 'http';
  /** The subdomain, or the custom host name the agent asked for. */
  readonly name: string;
  readonly url: string;
  /**
   * The relay enforces the request's basicAuth/allowIps. A relay too old to
   * know them ignores them and leaves this out: the agent then closes the
   * tunnel rather than expose it unprotected.
   */
  readonly access?: true;
}
export interface OpenedTcpMessage {
  readonly t: 'opened';
  readonly id: number;
  readonly tunnel: string;
  readonly proto: 'tcp';
  readonly port: number;
  readonly url: string;
  /** As in OpenedHttpMessage. */
  readonly access?: true;
}
export interface RefusedMessage {
  readonly t: 'refused';
  readonly id: number;
  readonly code: RelayErrorCode;
  readonly message: string;
}
export interface ErrorMessage {
  readonly t: 'error';
  readonly code: RelayErrorCode;
  readonly message: string;
}
export interface ShutdownMessage {
  readonly t: 'shutdown';
  readonly message: string;
}
export type RelayMessage =
  | WelcomeMessage
  | OpenedHttpMessage
  | OpenedTcpMessage
  | RefusedMessage
  | ErrorMessage
  | ShutdownMessage;

export type StreamProto = 'http' | 'https' | 'tcp';

/** The first frame on every data stream the relay opens. */
export interface StreamPreamble {
  readonly t: 'stream';
  readonly tunnel: string;
  readonly proto: StreamProto;
  readonly remoteAddress: string;
  readonly remotePort: number;
}

/** Encodes one message as a length-prefixed frame. */
export function encodeFrame(message: AgentMessage | RelayMessage | StreamPreamble): Buffer {
  if (typeof message !== 'object') throw new TypeError('message must be an object');
  const json = Buffer.from(JSON.stringify(message), 'utf8');
  if (json.length > MAX_CONTROL_MESSAGE) {
    throw new RangeError(
      `message of ${json.length} bytes exceeds the ${MAX_CONTROL_MESSAGE}-byte limit`,
    );
  }
  const frame = Buffer.allocUnsafe(LENGTH_PREFIX + json.length);
  frame.writeUInt32BE(json.length, 0);
  json.copy(frame, LENGTH_PREFIX);
  return frame;
}

/**
 * Splits a byte stream into frame payloads. push() returns the complete
 * payloads; a length above the limit throws ControlProtocolError at once
 * (before the bytes arrive), so a peer cannot make us buffer more.
 */
export class FrameDecoder {
  private buffer: Buffer = Buffer.alloc(0);
  private readonly maxMessage: number;

  constructor(maxMessage = MAX_CONTROL_MESSAGE) {
    if (!Number.isSafeInteger(maxMessage) || maxMessage < 1) {
      throw new RangeError(`maxMessage must be a positive integer, got ${String(maxMessage)}`);
    }
    this.maxMessage = maxMessage;
  }

  /** Bytes received but not yet part of a complete frame. */
  get bufferedBytes(): number {
    return this.buffer.length;
  }

  push(chunk: Buffer): Buffer[] {
    if (!Buffer.isBuffer(chunk)) throw new TypeError('chunk must be a Buffer');
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const frames: Buffer[] = [];
    let offset = 0;
    while (this.buffer.length - offset >= LENGTH_PREFIX) {
      const length = this.buffer.readUInt32BE(offset);
      if (length > this.maxMessage) {
        this.buffer = Buffer.alloc(0);
        throw new ControlProtocolError(
          `control frame of ${length} bytes exceeds the ${this.maxMessage}-byte limit`,
        );
      }
      if (this.buffer.length - offset - LENGTH_PREFIX < length) break;
      // Copy: the payload must not pin the (possibly large) input chunk.
      frames.push(
        Buffer.from(this.buffer.subarray(offset + LENGTH_PREFIX, offset + LENGTH_PREFIX + length)),
      );
      offset += LENGTH_PREFIX + length;
    }
    this.buffer = offset === this.buffer.length ? Buffer.alloc(0) : this.buffer.subarray(offset);
    if (offset > 0 && this.buffer.length > 0) this.buffer = Buffer.from(this.buffer);
    return frames;
  }
}

// ---- validation ----------------------------------------------------------------------

type JsonObject = Record<string, unknown>;

function parseObject(payload: Buffer): JsonObject {
  if (!Buffer.isBuffer(payload)) throw new TypeError('payload must be a Buffer');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(payload);
  } catch {
    throw new ControlProtocolError('control message is not valid UTF-8');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ControlProtocolError('control message is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ControlProtocolError('control message is not a JSON object');
  }
  return value as JsonObject;
}

function field(object: JsonObject, name: string): unknown {
  return Object.hasOwn(object, name) ? object[name] : undefined;
}

function requireString(object: JsonObject, name: string, maxLength: number): string {
  const value = field(object, name);
  if (typeof value !== 'string' || value.length > maxLength) {
    throw new ControlProtocolError(
      `control message field '${name}' must be a string of at most ${maxLength} characters`,
    );
  }
  return value;
}

function optionalString(object: JsonObject, name: string, maxLength: number): string | undefined {
  return field(object, name) === undefined ? undefined : requireString(object, name, maxLength);
}

function requireInteger(object: JsonObject, name: string, min: number, max: number): number {
  const value = field(object, name);
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new ControlProtocolError(
      `control message field '${name}' must be an integer in [${min}, ${max}]`,
    );
  }
  return value;
}

function optionalInteger(
  object: JsonObject,
  name: string,
  min: number,
  max: number,
): number | undefined {
  return field(object, name) === undefined ? undefined : requireInteger(object, name, min, max);
}

function requireCode(object: JsonObject): RelayErrorCode {
  const code = requireString(object, 'code', 64);
  if (!isRemoteErrorCode(code)) {
    throw new ControlProtocolError(`control message carries an unknown error code '${code}'`);
  }
  return code;
}

/** A message type for an error message: quoted and cut short, whatever the peer sent. */
function describeType(type: unknown): string {
  return typeof type === 'string' ? JSON.stringify(type.slice(0, 32)) : typeof type;
}

/** base64url of `bytes` bytes, unpadded. */
function base64urlPattern(bytes: number): RegExp {
  return new RegExp(`^[A-Za-z0-9_-]{${Math.ceil((bytes * 4) / 3)}}$`);
}
const SALT_PATTERN = base64urlPattern(BASIC_AUTH_SALT_BYTES);
const HASH_PATTERN = base64urlPattern(BASIC_AUTH_HASH_BYTES);

function optionalBasicAuth(object: JsonObject): BasicAuthHashes | undefined {
  const value = field(object, 'basicAuth');
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ControlProtocolError("control message field 'basicAuth' must be an object");
  }
  const auth = value as JsonObject;
  const salt = field(auth, 'salt');
  if (typeof salt !== 'string' || !SALT_PATTERN.test(salt)) {
    throw new ControlProtocolError(
      `basicAuth.salt must be ${BASIC_AUTH_SALT_BYTES} bytes of unpadded base64url`,
    );
  }
  const hashes = field(auth, 'hashes');
  if (!Array.isArray(hashes) || hashes.length === 0 || hashes.length > MAX_BASIC_AUTH_CREDENTIALS) {
    throw new ControlProtocolError(
      `basicAuth.hashes must list 1-${MAX_BASIC_AUTH_CREDENTIALS} credential hashes`,
    );
  }
  const checked = hashes.map((hash: unknown, index) => {
    if (typeof hash !== 'string' || !HASH_PATTERN.test(hash)) {
      throw new ControlProtocolError(
        `basicAuth.hashes[${index}] must be ${BASIC_AUTH_HASH_BYTES} bytes of unpadded base64url`,
      );
    }
    return hash;
  });
  return { salt, hashes: checked };
}

function optionalAllowIps(object: JsonObject): readonly string[] | undefined {
  const value = field(object, 'allowIps');
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length > MAX_ALLOWED_IPS) {
    throw new ControlProtocolError(`allowIps must list 1-${MAX_ALLOWED_IPS} CIDRs`);
  }
  const cidrs = value.map((entry: unknown, index) => {
    if (typeof entry !== 'string') {
      throw new ControlProtocolError(`allowIps[${index}] must be a string`);
    }
    return entry;
  });
  try {
    checkAllowedIps(cidrs, 'allowIps');
  } catch (error) {
    throw new ControlProtocolError(error instanceof RelayError ? error.message : String(error));
  }
  return cidrs;
}

const MAX_REQUEST_ID = 2 ** 31 - 1;
const MAX_TOKEN_LENGTH = 4096;

/** Parses a frame payload the relay received from an agent. */
export function parseAgentMessage(payload: Buffer): AgentMessage {
  const object = parseObject(payload);
  const type = field(object, 't');
  switch (type) {
    case 'hello': {
      const agent = optionalString(object, 'agent', 128);
      return {
        t: 'hello',
        v: requireInteger(object, 'v', 1, 1000),
        token: requireString(object, 'token', MAX_TOKEN_LENGTH),
        ...(agent === undefined ? {} : { agent }),
      };
    }
    case 'open': {
      const id = requireInteger(object, 'id', 1, MAX_REQUEST_ID);
      const proto = field(object, 'proto');
      if (proto === 'http') {
        const subdomain = optionalString(object, 'subdomain', 63);
        const hostname = optionalString(object, 'hostname', MAX_HOST_NAME_LENGTH);
        if (hostname !== undefined && !isValidHostName(hostname)) {
          throw new ControlProtocolError(
            "control message field 'hostname' must be a lower-case host name (two or more DNS labels)",
          );
        }
        if (hostname !== undefined && subdomain !== undefined) {
          throw new ControlProtocolError(
            "an http tunnel has a 'subdomain' or a 'hostname', not both",
          );
        }
        const basicAuth = optionalBasicAuth(object);
        const allowIps = optionalAllowIps(object);
        return {
          t: 'open',
          id,
          proto,
          ...(subdomain === undefined ? {} : { subdomain }),
          ...(hostname === undefined ? {} : { hostname }),
          ...(basicAuth === undefined ? {} : { basicAuth }),
          ...(allowIps === undefined ? {} : { allowIps }),
        };
      }
      if (proto === 'tcp') {
        const port = optionalInteger(object, 'port', 1, 65535);
        if (field(object, 'basicAuth') !== undefined) {
          throw new ControlProtocolError('basicAuth is for http tunnels');
        }
        if (field(object, 'hostname') !== undefined) {
          throw new ControlProtocolError('hostname is for http tunnels');
        }
        const allowIps = optionalAllowIps(object);
        return {
          t: 'open',
          id,
          proto,
          ...(port === undefined ? {} : { port }),
          ...(allowIps === undefined ? {} : { allowIps }),
        };
      }
      throw new ControlProtocolError("control message field 'proto' must be 'http' or 'tcp'");
    }
    case 'close':
      return { t: 'close', tunnel: requireString(object, 'tunnel', 64) };
    default:
      throw new ControlProtocolError(`unknown agent control message type ${describeType(type)}`);
  }
}

/** Parses a frame payload the agent received from the relay. */
export function parseRelayMessage(payload: Buffer): RelayMessage {
  const object = parseObject(payload);
  const type = field(object, 't');
  switch (type) {
    case 'welcome': {
      const httpPort = optionalInteger(object, 'httpPort', 1, 65535);
      const httpsPort = optionalInteger(object, 'httpsPort', 1, 65535);
      return {
        t: 'welcome',
        v: requireInteger(object, 'v', 1, 1000),
        session: requireString(object, 'session', 64),
        domain: requireString(object, 'domain', 253),
        tokenName: requireString(object, 'tokenName', 128),
        ...(httpPort === undefined ? {} : { httpPort }),
        ...(httpsPort === undefined ? {} : { httpsPort }),
      };
    }
    case 'opened': {
      const id = requireInteger(object, 'id', 1, MAX_REQUEST_ID);
      const tunnel = requireString(object, 'tunnel', 64);
      const url = requireString(object, 'url', 512);
      const proto = field(object, 'proto');
      const accessField = field(object, 'access');
      if (accessField !== undefined && accessField !== true) {
        throw new ControlProtocolError("control message field 'access' must be true if present");
      }
      const access = accessField === true ? { access: true as const } : {};
      if (proto === 'http') {
        const name = requireString(object, 'name', MAX_HOST_NAME_LENGTH);
        if (!isValidSubdomain(name) && !isValidHostName(name)) {
          throw new ControlProtocolError(
            "control message field 'name' must be a subdomain or a host name",
          );
        }
        return { t: 'opened', id, tunnel, proto, url, name, ...access };
      }
      if (proto === 'tcp') {
        return {
          t: 'opened',
          id,
          tunnel,
          proto,
          url,
          port: requireInteger(object, 'port', 1, 65535),
          ...access,
        };
      }
      throw new ControlProtocolError("control message field 'proto' must be 'http' or 'tcp'");
    }
    case 'refused':
      return {
        t: 'refused',
        id: requireInteger(object, 'id', 1, MAX_REQUEST_ID),
        code: requireCode(object),
        message: requireString(object, 'message', 1024),
      };
    case 'error':
      return {
        t: 'error',
        code: requireCode(object),
        message: requireString(object, 'message', 1024),
      };
    case 'shutdown':
      return { t: 'shutdown', message: requireString(object, 'message', 1024) };
    default:
      throw new ControlProtocolError(`unknown relay control message type ${describeType(type)}`);
  }
}

/** Parses the preamble frame of a data stream (on the agent). */
export function parseStreamPreamble(payload: Buffer): StreamPreamble {
  const object = parseObject(payload);
  if (field(object, 't') !== 'stream') {
    throw new ControlProtocolError("a data stream must start with a 'stream' preamble");
  }
  const proto = field(object, 'proto');
  if (proto !== 'http' && proto !== 'https' && proto !== 'tcp') {
    throw new ControlProtocolError("preamble field 'proto' must be 'http', 'https' or 'tcp'");
  }
  return {
    t: 'stream',
    tunnel: requireString(object, 'tunnel', 64),
    proto,
    remoteAddress: requireString(object, 'remoteAddress', 64),
    remotePort: requireInteger(object, 'remotePort', 0, 65535),
  };
}
