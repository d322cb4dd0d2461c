/**
 * The packet-connection interface Quantum runs over, and its real UDP implementation on
 * `Deno.listenDatagram` (receiving into one reused buffer).
 *
 * @example
 * ```ts
 * const conn = listenUdp({ hostname: "127.0.0.1", port: 0 });
 * const buffer = new Uint8Array(2048);
 * const received = await conn.receive(buffer); // null once closed
 * conn.close();
 * ```
 * @module
 */
import { setReceiveBuffer } from "./_sockopt.ts";

/** A datagram socket: the only I/O Quantum needs. */
export interface PacketConn {
  /** Local address. */
  readonly addr: Deno.NetAddr;
  /**
   * Receive one datagram into `buffer`. Resolves with a view of `buffer` (valid until the next
   * call) and the sender, or `null` once the connection is closed.
   */
  receive(buffer: Uint8Array): Promise<[Uint8Array, Deno.NetAddr] | null>;
  /** Send one datagram (fire and forget; failures are counted, never thrown). */
  send(data: Uint8Array, addr: Deno.NetAddr): void;
  /** Close; a pending `receive` resolves with `null`. Idempotent. */
  close(): void;
}

/** Counters every {@linkcode PacketConn} implementation may expose. */
export interface PacketConnStats {
  /** Datagrams whose send failed. */
  sendErrors: number;
}

/** A {@linkcode PacketConn} over a real `Deno.DatagramConn`. */
export class UdpPacketConn implements PacketConn {
  #socket: Deno.DatagramConn;
  #closed = false;
  #sending = 0;
  #queue: Array<Uint8Array | Deno.NetAddr> = [];
  #socketClosed = false;
  /** Send failures (e.g. ECONNREFUSED after an ICMP unreachable). */
  sendErrors = 0;

  /** Wrap an open UDP socket (this object closes it). */
  constructor(socket: Deno.DatagramConn) {
    this.#socket = socket;
  }

  /** Local address. */
  get addr(): Deno.NetAddr {
    return this.#socket.addr as Deno.NetAddr;
  }

  async receive(buffer: Uint8Array): Promise<[Uint8Array, Deno.NetAddr] | null> {
    while (!this.#closed) {
      try {
        const [data, addr] = await this.#socket.receive(buffer);
        return [data, addr as Deno.NetAddr];
      } catch (error) {
        if (this.#closed || error instanceof Deno.errors.BadResource) return null;
        // ICMP errors (e.g. port unreachable) surface here on Linux: skip them.
        if (error instanceof Deno.errors.ConnectionRefused) continue;
        if (error instanceof Deno.errors.ConnectionReset) continue;
        throw error;
      }
    }
    return null;
  }

  send(data: Uint8Array, addr: Deno.NetAddr): void {
    if (this.#closed) return;
    // One send op at a time, in order: concurrent async sends overtake each other when the
    // socket's send buffer is momentarily full (seen as reordering, i.e. spurious fast
    // retransmits, even on loopback).
    if (this.#sending > 0) {
      this.#queue.push(data, addr);
      return;
    }
    this.#sending = 1;
    this.#pump(data, addr);
  }

  async #pump(data: Uint8Array, addr: Deno.NetAddr): Promise<void> {
    let nextData: Uint8Array | undefined = data;
    let nextAddr = addr;
    while (nextData) {
      try {
        await this.#socket.send(nextData, nextAddr);
      } catch {
        this.sendErrors++;
      }
      if (this.#socketClosed) break;
      nextData = this.#queue.shift() as Uint8Array | undefined;
      if (nextData) nextAddr = this.#queue.shift() as Deno.NetAddr;
    }
    this.#queue.length = 0;
    this.#sending = 0;
    if (this.#closed) this.#closeSocket();
  }

  /** Close; datagrams already handed to `send` still leave first. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#sending === 0) this.#closeSocket();
  }

  #closeSocket(): void {
    if (this.#socketClosed) return;
    this.#socketClosed = true;
    try {
      this.#socket.close();
    } catch (error) {
      if (!(error instanceof Deno.errors.BadResource)) throw error;
    }
  }
}

/** Bind a UDP socket and wrap it in a {@linkcode UdpPacketConn}. */
export function listenUdp(
  options: { hostname?: string; port?: number; receiveBufferBytes?: number } = {},
): UdpPacketConn {
  const socket = Deno.listenDatagram({
    hostname: options.hostname ?? "0.0.0.0",
    port: options.port ?? 0,
    transport: "udp",
  });
  if (options.receiveBufferBytes !== undefined) {
    try {
      setReceiveBuffer((socket.addr as Deno.NetAddr).port, options.receiveBufferBytes);
    } catch (error) {
      socket.close();
      throw error;
    }
  }
  return new UdpPacketConn(socket);
}
