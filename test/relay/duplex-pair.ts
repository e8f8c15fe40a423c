/**
 * Test transports for the yamux session: an in-memory Duplex pair (what one end
 * writes, the other reads; end() is EOF) and a pair of TCP sockets on 127.0.0.1.
 */
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';

class PairEnd extends Duplex {
  peer: PairEnd | null = null;

  override _write(
    chunk: unknown,
    _encoding: BufferEncoding,
    callback: (error?: Error | null) => void,
  ): void {
    if (this.peer !== null && !this.peer.destroyed) this.peer.push(chunk);
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.peer !== null && !this.peer.destroyed) this.peer.push(null);
    callback();
  }

  override _read(): void {
    // Data arrives by the peer's push.
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Like a closed socket: the other end sees EOF.
    const peer = this.peer;
    if (peer !== null && !peer.destroyed && !peer.readableEnded) peer.push(null);
    callback(error);
  }
}

/** Two connected in-memory Duplex ends. Writes never block (no backpressure). */
export function duplexPair(): [Duplex, Duplex] {
  const a = new PairEnd();
  const b = new PairEnd();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/** Two connected TCP sockets on 127.0.0.1 (the listener is closed again). */
export async function tcpPair(): Promise<[client: Socket, server: Socket]> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = connect(address.port, '127.0.0.1');
  await once(client, 'connect');
  const [serverSide] = await accepted;
  server.close();
  client.setNoDelay(true);
  serverSide.setNoDelay(true);
  return [client, serverSide];
}
