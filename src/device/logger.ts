/**
 * The daemon's log, in wireguard-go's format and levels (LOG_LEVEL=silent|error|verbose|debug;
 * verbose and debug are the same, as in wireguard-go). Library code does not log: it publishes
 * diagnostics_channel events, which the daemon subscribes to here.
 */
import { subscribe } from 'node:diagnostics_channel';
import type { DropEvent, HandshakeEvent } from '../wireguard/engine.js';

/** The engine's handshake events in wireguard-go's wording, so logs read the same. */
const HANDSHAKE_WORDING: Record<HandshakeEvent['event'], string> = {
  'initiation-sent': 'Sending handshake initiation',
  'initiation-received': 'Received handshake initiation',
  'response-sent': 'Sending handshake response',
  'session-established': 'Secure session established (keypair confirmed)',
  'cookie-sent': 'Sending cookie response for denied handshake message',
  'cookie-received': 'Receiving cookie response',
  'gave-up': 'Handshake did not complete after 20 attempts, giving up',
  'keys-zeroed': "Removing all keys, since we haven't received a new one in 540 seconds",
};

export type LogLevel = 'silent' | 'error' | 'verbose';

export function parseLogLevel(value: string | undefined): LogLevel {
  switch (value) {
    case 'verbose':
    case 'debug':
      return 'verbose';
    case 'silent':
      return 'silent';
    default:
      return 'error';
  }
}

export class Logger {
  constructor(
    private readonly level: LogLevel,
    private readonly name: string,
  ) {}

  error(message: string): void {
    if (this.level !== 'silent') process.stderr.write(this.line('ERROR', message));
  }

  verbose(message: string): void {
    if (this.level === 'verbose') process.stdout.write(this.line('DEBUG', message));
  }

  get isVerbose(): boolean {
    return this.level === 'verbose';
  }

  /** Print the engine's handshake and drop events at verbose level. */
  followEngine(): void {
    if (!this.isVerbose) return;
    subscribe('warren:wireguard:handshake', (message) => {
      const event = message as HandshakeEvent;
      this.verbose(`peer(${shortKey(event.peer)}) - ${HANDSHAKE_WORDING[event.event]}`);
    });
    subscribe('warren:wireguard:drop', (message) => {
      const event = message as DropEvent;
      this.verbose(
        `${event.peer === null ? '' : `peer(${shortKey(event.peer)}) - `}dropped packet: ${event.reason}`,
      );
    });
  }

  private line(tag: string, message: string): string {
    const now = new Date();
    const pad = (n: number): string => String(n).padStart(2, '0');
    const stamp = `${now.getFullYear()}/${pad(now.getMonth() + 1)}/${pad(now.getDate())} ${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}`;
    return `${tag}: (${this.name}) ${stamp} ${message}\n`;
  }
}

function shortKey(hex: string): string {
  if (hex === '') return 'unknown';
  const b64 = Buffer.from(hex, 'hex').toString('base64');
  return `${b64.slice(0, 4)}…${b64.slice(-5, -1)}`;
}
