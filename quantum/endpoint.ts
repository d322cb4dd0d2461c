/**
 * `listen()` and `dial()`: endpoints that own a packet connection, demultiplex datagrams by
 * connection id, answer SYNs statelessly with a cookie, and drive connections.
 *
 * @example
 * ```ts
 * const listener = listen({ hostname: "127.0.0.1", port: 9000 });
 * (async () => {
 *   for await (const conn of listener) conn.readable.pipeTo(conn.writable); // echo
 * })();
 * const conn = await dial({ hostname: "127.0.0.1", port: 9000 });
 * ```
 * @module
 */
import { newId } from "../kernel/mod.ts";
import { type Clock, realClock } from "./clock.ts";
import type { CongestionControllerFactory } from "./congestion.ts";
import {
  Connection,
  type ConnectionHost,
  type ConnectionOptions,
  type DropReason,
  type FinalPacket,
  type QuantumConnection,
} from "./connection.ts";
import { CookieJar } from "./cookie.ts";
import { createBbr } from "./bbr.ts";
import { newReno } from "./newreno.ts";
import { listenUdp, type PacketConn } from "./packet_conn.ts";
import {
  decodePacket,
  encodePacket,
  FLAG,
  isUuidV7,
  MAX_PAYLOAD_SIZE,
  type Packet,
} from "./wire.ts";

/** Options for {@linkcode listen}. */
export interface ListenOptions extends ConnectionOptions {
  /**
   * Raise the UDP socket's kernel receive buffer (`SO_RCVBUF`, e.g. 4 MiB) so bursts are not
   * dropped by the kernel; needs `--allow-ffi`, Linux, capped by `net.core.rmem_max`. Default:
   * the kernel's default. Ignored with `packetConn`.
   */
  receiveBufferBytes?: number;
  /**
   * Send and receive through batched `sendmmsg`/`recvmmsg` (FFI) when the platform and
   * permissions allow (default true; see `packet_conn.ts`). Ignored with `packetConn`.
   */
  batchedIo?: boolean;
  /** UDP port (default 0: any). Ignored with `packetConn`. */
  port?: number;
  /** Bind address (default "0.0.0.0"). Ignored with `packetConn`. */
  hostname?: string;
  /** Use this packet connection instead of a new UDP socket; the listener closes it. */
  packetConn?: PacketConn;
  /** Clock (default the real one). */
  clock?: Clock;
  /** Connections handshaken but not yet accepted, beyond which cookie echoes are dropped. */
  backlog?: number;
  /** Cookie HMAC key (default random). */
  cookieSecret?: Uint8Array;
}

/** Options for {@linkcode dial}. */
export interface DialOptions extends ConnectionOptions {
  /**
   * Raise the UDP socket's kernel receive buffer (`SO_RCVBUF`, e.g. 4 MiB) so bursts are not
   * dropped by the kernel; needs `--allow-ffi`, Linux, capped by `net.core.rmem_max`. Default:
   * the kernel's default. Ignored with `packetConn`.
   */
  receiveBufferBytes?: number;
  /**
   * Send and receive through batched `sendmmsg`/`recvmmsg` (FFI) when the platform and
   * permissions allow (default true; see `packet_conn.ts`). Ignored with `packetConn`.
   */
  batchedIo?: boolean;
  /** Server host name or IP. */
  hostname: string;
  /** Server UDP port. */
  port: number;
  /** Use this packet connection instead of a new UDP socket; the connection closes it. */
  packetConn?: PacketConn;
  /** Clock (default the real one). */
  clock?: Clock;
  /** Give up the handshake after this long (ms, default 10 s). */
  handshakeTimeoutMs?: number;
}

/** Listener counters. */
export interface ListenerStats {
  /** Connections in the table (open or closing). */
  connections: number;
  /** Connections created from a verified cookie. */
  accepted: number;
  /** Connections waiting in the accept queue. */
  pendingAccept: number;
  /** Closed connections remembered briefly to re-ACK a retransmitted FIN. */
  lingering: number;
  /** Datagrams received. */
  datagramsReceived: number;
  /** SYNs answered (statelessly). */
  synReceived: number;
  /** Drops that no connection owns, by reason. */
  drops: Partial<Record<DropReason, number>>;
}

/** A listening endpoint: an async iterable of incoming connections. */
export interface QuantumListener extends AsyncIterable<QuantumConnection> {
  /** Local address. */
  readonly addr: Deno.NetAddr;
  /** Next connection, or null once the listener is closed. */
  accept(): Promise<QuantumConnection | null>;
  /** Reset every connection, close the socket, end iteration. */
  close(): Promise<void>;
  /** Counters. */
  stats(): ListenerStats;
}

interface Linger {
  /** Final ACK (graceful close) or RST (any other close). */
  reply: Uint8Array;
  graceful: boolean;
  expires: number;
}

/** How long a listener answers for a connection it reset (the cookie validity). */
const RESET_LINGER_MS = 10_000;

const MAX_LINGER = 4096;
/** Stateless RSTs a listener sends per second at most, for packets of unknown connections. */
const STATELESS_RESETS_PER_SECOND = 100;

/** A token bucket of `rate` tokens per second, holding at most `rate`. */
class TokenBucket {
  #rate: number;
  #tokens: number;
  #last = -Infinity;

  constructor(rate: number) {
    this.#rate = rate;
    this.#tokens = rate;
  }

  take(now: number): boolean {
    if (this.#last !== -Infinity) {
      this.#tokens = Math.min(this.#rate, this.#tokens + ((now - this.#last) * this.#rate) / 1000);
    }
    this.#last = now;
    if (this.#tokens < 1) return false;
    this.#tokens--;
    return true;
  }
}

/** Shared machinery of listeners and dialers. */
class Endpoint implements ConnectionHost {
  readonly packetConn: PacketConn;
  readonly clock: Clock;
  readonly connections = new Map<string, Connection>();
  readonly drops: Partial<Record<DropReason, number>> = {};
  datagramsReceived = 0;
  #loop: Promise<void>;
  #closed = false;
  #lingering = new Map<string, Linger>();
  onDatagram: (packet: Packet, datagram: Uint8Array, from: Deno.NetAddr, now: number) => void =
    () => {};
  onConnectionClosed: (conn: Connection, lingerMs: number) => Promise<void> | void = () => {};

  constructor(packetConn: PacketConn, clock: Clock) {
    this.packetConn = packetConn;
    this.clock = clock;
    this.#loop = this.#run();
  }

  get lingering(): number {
    return this.#lingering.size;
  }

  drop(reason: DropReason): void {
    this.drops[reason] = (this.drops[reason] ?? 0) + 1;
  }

  send(datagram: Uint8Array, addr: Deno.NetAddr): void {
    this.packetConn.send(datagram, addr);
  }

  sendPacket(packet: Packet, addr: Deno.NetAddr): void {
    if (this.packetConn.sendPacket) this.packetConn.sendPacket(packet, addr);
    else this.packetConn.send(encodePacket(packet), addr);
  }

  onClosed(conn: Connection, final: FinalPacket, lingerMs: number): Promise<void> | void {
    if (this.connections.get(conn.id) === conn) this.connections.delete(conn.id);
    if (!this.#closed) {
      const now = this.clock.now();
      this.#pruneLinger(now);
      if (this.#lingering.size >= MAX_LINGER) {
        const oldest = this.#lingering.keys().next().value;
        if (oldest !== undefined) this.#lingering.delete(oldest);
      }
      this.#lingering.set(conn.id, {
        reply: final.packet,
        graceful: final.graceful,
        expires: now + (final.graceful ? lingerMs : RESET_LINGER_MS),
      });
    }
    return this.onConnectionClosed(conn, final.graceful ? lingerMs : 0);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const conn of [...this.connections.values()]) conn.shutdown();
    this.packetConn.close();
    await this.#loop;
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  async #run(): Promise<void> {
    const buffer = new Uint8Array(65536);
    while (true) {
      let received: [Uint8Array, Deno.NetAddr] | null;
      try {
        received = await this.packetConn.receive(buffer);
      } catch (error) {
        if (this.#closed) return;
        throw error;
      }
      if (!received) return;
      // A batching packet connection has more datagrams ready: handle them all in this turn,
      // so the replies they cause leave together too.
      while (received && !this.#closed) {
        this.#handle(received[0], received[1]);
        received = this.packetConn.tryReceive?.() ?? null;
      }
      if (this.#closed) return;
    }
  }

  #handle(data: Uint8Array, from: Deno.NetAddr): void {
    this.datagramsReceived++;
    const now = this.clock.now();
    const result = decodePacket(data);
    if (!result.ok) {
      this.drop(result.reason);
      return;
    }
    const packet = result.packet;
    const conn = this.connections.get(packet.connectionId);
    if (conn) {
      conn.receive(packet, data, from, now);
      return;
    }
    const linger = this.#lingering.get(packet.connectionId);
    if (linger && linger.expires > now) {
      if (linger.graceful) {
        if (packet.payload.length > 0 || packet.flags & FLAG.FIN) this.send(linger.reply, from);
      } else if (!(packet.flags & (FLAG.RST | FLAG.SYN))) {
        this.send(linger.reply, from);
      }
      return;
    }
    this.onDatagram(packet, data, from, now);
  }

  #pruneLinger(now: number): void {
    for (const [id, linger] of this.#lingering) {
      if (linger.expires > now) break;
      this.#lingering.delete(id);
    }
  }
}

function resolveOptions(options: ConnectionOptions): CongestionControllerFactory {
  const congestion = options.congestion ?? "bbr";
  if (typeof congestion === "function") return congestion;
  if (congestion === "bbr") return (o) => createBbr(o);
  if (congestion === "newreno") return (o) => newReno(o);
  throw new TypeError(
    `Invalid congestion: expected "bbr", "newreno" or a factory, got ${String(congestion)}`,
  );
}

/**
 * Listen for Quantum connections. The listener keeps no state for a SYN: it answers with a
 * SYN+ACK carrying a cookie and creates the connection only when the client echoes it.
 *
 * @example
 * ```ts
 * const listener = listen({ port: 9000 });
 * for await (const conn of listener) {
 *   await conn.readable.pipeTo(conn.writable);
 * }
 * ```
 */
export function listen(options: ListenOptions = {}): QuantumListener {
  const packetConn = options.packetConn ??
    listenUdp({
      hostname: options.hostname ?? "0.0.0.0",
      port: options.port ?? 0,
      ...(options.receiveBufferBytes === undefined
        ? {}
        : { receiveBufferBytes: options.receiveBufferBytes }),
      batchedIo: options.batchedIo,
    });
  const clock = options.clock ?? realClock;
  const endpoint = new Endpoint(packetConn, clock);
  const jar = new CookieJar(options.cookieSecret ? { secret: options.cookieSecret } : {});
  const congestion = resolveOptions(options);
  const backlog = options.backlog ?? 128;
  const maxPayload = Math.min(options.maxPayload ?? MAX_PAYLOAD_SIZE, MAX_PAYLOAD_SIZE);
  const window = options.receiveWindow ?? 1024;
  const queue: Connection[] = [];
  const waiters: Array<(conn: Connection | null) => void> = [];
  let accepted = 0;
  let synReceived = 0;
  const resetBudget = new TokenBucket(STATELESS_RESETS_PER_SECOND);

  endpoint.onDatagram = (packet, data, from, now) => {
    const flags = packet.flags;
    if ((flags & (FLAG.SYN | FLAG.ACK)) === FLAG.SYN) {
      if (!isUuidV7(packet.connectionId)) return endpoint.drop("bad_connection_id");
      if (endpoint.isClosed) return;
      synReceived++;
      endpoint.send(
        encodePacket({
          flags: FLAG.SYN | FLAG.ACK,
          connectionId: packet.connectionId,
          seq: 0,
          ack: 1,
          handshake: { maxPayload, window, cookie: jar.issue(from, packet.connectionId, now) },
          ackInfo: { window, ackDelayMicros: 0, sack: [] },
          payload: new Uint8Array(0),
        }),
        from,
      );
      return;
    }
    if (flags & FLAG.URG && packet.handshake && !(flags & FLAG.SYN) && !endpoint.isClosed) {
      if (!jar.verify(packet.handshake.cookie, from, packet.connectionId, now)) {
        endpoint.drop("bad_cookie");
        return statelessReset(packet, from, now);
      }
      if (queue.length >= backlog) return endpoint.drop("backlog_full");
      const conn = new Connection({
        id: packet.connectionId,
        role: "server",
        remoteAddr: { ...from },
        host: endpoint,
        clock,
        options,
        congestion,
        peer: { maxPayload: packet.handshake.maxPayload, window: packet.handshake.window },
      });
      endpoint.connections.set(conn.id, conn);
      accepted++;
      conn.receive(packet, data, from, now);
      const waiter = waiters.shift();
      if (waiter) waiter(conn);
      else queue.push(conn);
      return;
    }
    endpoint.drop("unknown_connection");
    statelessReset(packet, from, now);
  };

  /**
   * Tell a peer that still thinks a connection exists (e.g. this listener restarted, or its
   * cookie no longer verifies) at once, instead of letting it idle out. Rate-limited; never
   * answers an RST or a SYN; the reply is no larger than a packet it answers, so it cannot
   * amplify a spoofed flood.
   */
  const statelessReset = (packet: Packet, from: Deno.NetAddr, now: number): void => {
    if (packet.flags & (FLAG.RST | FLAG.SYN) || !resetBudget.take(now)) return;
    endpoint.send(
      encodePacket({
        flags: FLAG.RST | FLAG.ACK,
        connectionId: packet.connectionId,
        seq: 0,
        ack: 0,
        ackInfo: { window: 0, ackDelayMicros: 0, sack: [] },
        payload: new Uint8Array(0),
      }),
      from,
    );
  };

  const accept = (): Promise<QuantumConnection | null> => {
    const next = queue.shift();
    if (next) return Promise.resolve(next);
    if (endpoint.isClosed) return Promise.resolve(null);
    return new Promise((resolve) => waiters.push(resolve));
  };

  return {
    get addr() {
      return packetConn.addr;
    },
    accept,
    async close() {
      for (const waiter of waiters.splice(0)) waiter(null);
      queue.length = 0;
      await endpoint.close();
    },
    stats() {
      return {
        connections: endpoint.connections.size,
        accepted,
        pendingAccept: queue.length,
        lingering: endpoint.lingering,
        datagramsReceived: endpoint.datagramsReceived,
        synReceived,
        drops: { ...endpoint.drops },
      };
    },
    async *[Symbol.asyncIterator]() {
      while (true) {
        const conn = await accept();
        if (!conn) return;
        yield conn;
      }
    },
  };
}

/**
 * Open a connection to a Quantum listener.
 * @throws {AppError} UNAVAILABLE when the handshake times out
 *
 * @example
 * ```ts
 * const conn = await dial({ hostname: "127.0.0.1", port: 9000 });
 * await conn.readable.pipeTo(Deno.stdout.writable);
 * ```
 */
export async function dial(options: DialOptions): Promise<QuantumConnection> {
  if (typeof options.hostname !== "string" || options.hostname === "") {
    throw new TypeError("Invalid hostname: expected a non-empty string");
  }
  if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) {
    throw new RangeError("Invalid port: expected 1..65535");
  }
  const hostname = await resolveHost(options.hostname);
  const packetConn = options.packetConn ??
    listenUdp({
      hostname: hostname.includes(":") ? "::" : "0.0.0.0",
      port: 0,
      ...(options.receiveBufferBytes === undefined
        ? {}
        : { receiveBufferBytes: options.receiveBufferBytes }),
      batchedIo: options.batchedIo,
    });
  const clock = options.clock ?? realClock;
  const endpoint = new Endpoint(packetConn, clock);
  const conn = new Connection({
    id: newId(),
    role: "client",
    remoteAddr: { transport: "udp", hostname, port: options.port },
    host: endpoint,
    clock,
    options,
    congestion: resolveOptions(options),
    ...(options.handshakeTimeoutMs === undefined
      ? {}
      : { handshakeTimeoutMs: options.handshakeTimeoutMs }),
  });
  endpoint.connections.set(conn.id, conn);
  endpoint.onDatagram = () => conn.countDrop("unknown_connection");
  endpoint.onConnectionClosed = (_conn, lingerMs) => {
    if (lingerMs <= 0) return endpoint.close();
    return new Promise<void>((resolve) => {
      clock.setTimer(lingerMs, () => endpoint.close().then(resolve, resolve));
    });
  };
  const originalDrop = endpoint.drop.bind(endpoint);
  endpoint.drop = (reason) => {
    originalDrop(reason);
    conn.countDrop(reason);
  };
  await conn.open();
  return conn;
}

async function resolveHost(hostname: string): Promise<string> {
  if (hostname === "localhost") return "127.0.0.1";
  if (/^[\d.]+$/.test(hostname) || hostname.includes(":")) return hostname;
  const [address] = await Deno.resolveDns(hostname, "A");
  if (!address) throw new TypeError(`Cannot resolve ${hostname}`);
  return address;
}
