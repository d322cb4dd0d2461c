/**
 * The packet-connection interface Quantum runs over, and its real UDP implementation on
 * `Deno.listenDatagram` (receiving into one reused buffer).
 *
 * Batched I/O (Linux, `--allow-ffi`; on by default where available): datagrams handed to
 * `send` during one turn of the event loop leave together in one `sendmmsg(2)`, and each
 * wake-up of `receive` also drains what else is already queued in the kernel with
 * `recvmmsg(2)`, handed out by `tryReceive` without further async ops (see `_udp_batch.ts`).
 * Deno's own async receive stays the wake-up and Deno's async send the fallback when the socket
 * buffer is full, so order is kept. Without FFI permission, or with `batchedIo: false`, every
 * datagram is one Deno op as before.
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
import { UdpBatch } from "./_udp_batch.ts";
import { encodePacket, encodePacketInto, type Packet } from "./wire.ts";

/** A datagram socket: the only I/O Quantum needs. */
export interface PacketConn {
  /** Local address. */
  readonly addr: Deno.NetAddr;
  /**
   * Receive one datagram into `buffer`. Resolves with a view of `buffer` (valid until the next
   * call) and the sender, or `null` once the connection is closed.
   */
  receive(buffer: Uint8Array): Promise<[Uint8Array, Deno.NetAddr] | null>;
  /**
   * A datagram that is already here, without waiting, or null. Optional: implementations that
   * receive in batches offer it so a reader can handle a whole batch in one turn. The view is
   * valid until the next `receive`/`tryReceive` call.
   */
  tryReceive?(): [Uint8Array, Deno.NetAddr] | null;
  /** Send one datagram (fire and forget; failures are counted, never thrown). */
  send(data: Uint8Array, addr: Deno.NetAddr): void;
  /**
   * Encode and send a packet, like `send(encodePacket(packet), addr)`. Optional:
   * implementations that can encode straight into their send buffer offer it.
   */
  sendPacket?(packet: Packet, addr: Deno.NetAddr): void;
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
  #batch: UdpBatch | undefined;
  #flushScheduled = false;
  #closed = false;
  #sending = 0;
  #queue: Array<Uint8Array | Deno.NetAddr> = [];
  #socketClosed = false;
  /** Send failures (e.g. ECONNREFUSED after an ICMP unreachable). */
  sendErrors = 0;

  /**
   * Wrap an open UDP socket (this object closes it). With `batchedIo` (default true) it uses
   * `sendmmsg`/`recvmmsg` when the platform and permissions allow, else Deno's ops.
   */
  constructor(socket: Deno.DatagramConn, options: { batchedIo?: boolean } = {}) {
    this.#socket = socket;
    if (options.batchedIo ?? true) this.#batch = UdpBatch.open(socket);
  }

  /** Local address. */
  get addr(): Deno.NetAddr {
    return this.#socket.addr as Deno.NetAddr;
  }

  /** True when sends and receives go through `sendmmsg`/`recvmmsg`. */
  get batched(): boolean {
    return this.#batch !== undefined;
  }

  /** Datagrams dropped because they were larger than a batch slot (batched receive only). */
  get receiveTruncated(): number {
    return this.#batch?.receiveTruncated ?? 0;
  }

  async receive(buffer: Uint8Array): Promise<[Uint8Array, Deno.NetAddr] | null> {
    const ready = this.tryReceive();
    if (ready) return ready;
    while (!this.#closed) {
      try {
        const [data, addr] = await this.#socket.receive(buffer);
        this.#batch?.allowRefill(); // a wake-up: drain what else is queued, in one batch
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

  tryReceive(): [Uint8Array, Deno.NetAddr] | null {
    if (this.#closed || !this.#batch) return null;
    return this.#batch.next();
  }

  send(data: Uint8Array, addr: Deno.NetAddr): void {
    if (this.#closed) return;
    // One send op at a time, in order: concurrent async sends overtake each other when the
    // socket's send buffer is momentarily full (seen as reordering, i.e. spurious fast
    // retransmits, even on loopback). While one is running, everything queues behind it.
    if (this.#sending > 0) {
      this.#queue.push(data, addr);
      return;
    }
    if (this.#batch && this.#addToBatch(data, addr)) return;
    if (this.#sending > 0) {
      this.#queue.push(data, addr); // the batch flush fell back to async sends
      return;
    }
    this.#sending = 1;
    this.#pump(data, addr);
  }

  sendPacket(packet: Packet, addr: Deno.NetAddr): void {
    // The common case: encoded straight into the next sendmmsg slot (no buffer, no copy).
    const slot = !this.#closed && this.#sending === 0 ? this.#batch?.reserve(addr) : null;
    if (slot) {
      this.#batch!.commit(encodePacketInto(packet, slot));
      this.#scheduleFlush();
      return;
    }
    this.send(encodePacket(packet), addr); // batch full (flushes it), busy or not batched
  }

  /** Queue for the next `sendmmsg`; false when the datagram must take the async path. */
  #addToBatch(data: Uint8Array, addr: Deno.NetAddr): boolean {
    const batch = this.#batch!;
    if (!batch.add(data, addr)) {
      // Batch full, datagram too large or a host name: what is batched leaves first.
      this.#flushBatch();
      if (this.#sending > 0 || !batch.add(data, addr)) return false;
    }
    this.#scheduleFlush();
    return true;
  }

  /** Everything sent during this turn of the event loop leaves in one sendmmsg. */
  #scheduleFlush(): void {
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(this.#flushTask);
    }
  }

  #flushTask = (): void => {
    this.#flushScheduled = false;
    this.#flushBatch();
  };

  /** One `sendmmsg`; what the full socket buffer refuses goes to the async path, in order. */
  #flushBatch(): void {
    if (!this.#batch || this.#batch.pending === 0) return;
    const { errors, unsent } = this.#batch.flush();
    this.sendErrors += errors;
    const first = unsent[0];
    if (!first) return;
    for (let i = 1; i < unsent.length; i++) this.#queue.push(unsent[i]![0], unsent[i]![1]);
    this.#sending = 1;
    this.#pump(first[0], first[1]);
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
    this.#flushBatch();
    if (this.#sending === 0) this.#closeSocket();
  }

  #closeSocket(): void {
    if (this.#socketClosed) return;
    this.#socketClosed = true;
    // The fd number may be reused once the socket closes: stop using it first.
    this.#batch?.close();
    try {
      this.#socket.close();
    } catch (error) {
      if (!(error instanceof Deno.errors.BadResource)) throw error;
    }
  }
}

/** Bind a UDP socket and wrap it in a {@linkcode UdpPacketConn}. */
export function listenUdp(
  options: {
    hostname?: string;
    port?: number;
    receiveBufferBytes?: number;
    /** Batched `sendmmsg`/`recvmmsg` when available (default true); false: Deno's ops only. */
    batchedIo?: boolean;
  } = {},
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
  return new UdpPacketConn(socket, options);
}
