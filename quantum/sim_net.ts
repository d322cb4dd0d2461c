/**
 * An in-memory simulated network of {@linkcode PacketConn}s driven by a {@linkcode Clock}
 * (normally a {@linkcode VirtualClock}), with seeded impairments per direction.
 *
 * @example
 * ```ts
 * const clock = new VirtualClock();
 * const net = new SimNetwork({ clock, impairments: { loss: 0.1, delayMs: 5, seed: 7 } });
 * const a = net.listen();
 * const b = net.listen();
 * a.send(new Uint8Array([1]), b.addr);
 * ```
 * @module
 */
import type { Clock } from "./clock.ts";
import { Impairer, type Impairments, type ImpairmentStats } from "./impairments.ts";
import type { PacketConn } from "./packet_conn.ts";

/** Options for {@linkcode SimNetwork}. */
export interface SimNetworkOptions {
  /** Clock that times deliveries. */
  clock: Clock;
  /** Impairments applied to every datagram (one seeded impairer for the whole network). */
  impairments?: Impairments;
  /** Datagrams a socket buffers before dropping (like SO_RCVBUF; default 8192). */
  receiveQueue?: number;
}

/** A simulated network: sockets addressed as `sim:<port>` on hostname "10.0.0.1". */
export class SimNetwork {
  #clock: Clock;
  #impairer: Impairer;
  #sockets = new Map<string, SimPacketConn>();
  #nextPort = 10000;
  #receiveQueue: number;
  /** Datagrams addressed to nobody. */
  unroutable = 0;
  /** Datagrams dropped because a socket's receive queue was full. */
  receiveQueueDrops = 0;
  /** Called for every datagram a socket sends, before impairment (for tests to observe). */
  onSend?: (data: Uint8Array, from: Deno.NetAddr, to: Deno.NetAddr) => void;
  /** Decide per datagram to bypass impairments and drop (`true`) — for targeted tests. */
  filter?: (data: Uint8Array, from: Deno.NetAddr, to: Deno.NetAddr) => boolean;

  /** An empty network timed by `options.clock`. */
  constructor(options: SimNetworkOptions) {
    this.#clock = options.clock;
    this.#impairer = new Impairer(options.impairments);
    this.#receiveQueue = options.receiveQueue ?? 8192;
  }

  /** Impairment counters. */
  get stats(): ImpairmentStats {
    return this.#impairer.stats;
  }

  /** Change impairments mid-run. */
  setImpairments(impairments: Impairments): void {
    this.#impairer.update(impairments);
  }

  /** Open a socket on `port` (or the next free one). */
  listen(port?: number): SimPacketConn {
    const chosen = port ?? this.#nextPort++;
    const conn = new SimPacketConn(this, { transport: "udp", hostname: "10.0.0.1", port: chosen });
    if (this.#sockets.has(key(conn.addr))) throw new TypeError(`Port ${chosen} in use`);
    this.#sockets.set(key(conn.addr), conn);
    return conn;
  }

  /** Deliver `data` as if sent from `from` (which need not exist: spoofing). */
  inject(data: Uint8Array, from: Deno.NetAddr, to: Deno.NetAddr): void {
    this._route(data, from, to);
  }

  /** @internal */
  _route(data: Uint8Array, from: Deno.NetAddr, to: Deno.NetAddr): void {
    this.onSend?.(data, from, to);
    if (this.filter?.(data, from, to)) return;
    for (const { delayMs, data: copy } of this.#impairer.process(data, this.#clock.now())) {
      this.#clock.setTimer(delayMs, () => {
        const target = this.#sockets.get(key(to));
        if (!target) {
          this.unroutable++;
          return;
        }
        if (!target._deliver(copy, from, this.#receiveQueue)) this.receiveQueueDrops++;
      });
    }
  }

  /** @internal */
  _rebind(conn: SimPacketConn, from: Deno.NetAddr): Deno.NetAddr {
    this.#sockets.delete(key(from));
    const addr: Deno.NetAddr = { ...from, port: this.#nextPort++ };
    this.#sockets.set(key(addr), conn);
    return addr;
  }

  /** @internal */
  _remove(conn: SimPacketConn): void {
    if (this.#sockets.get(key(conn.addr)) === conn) this.#sockets.delete(key(conn.addr));
  }
}

/** A socket on a {@linkcode SimNetwork}. */
export class SimPacketConn implements PacketConn {
  #net: SimNetwork;
  #addr: Deno.NetAddr;
  #queue: Array<[Uint8Array, Deno.NetAddr]> = [];
  #waiter: ((value: [Uint8Array, Deno.NetAddr] | null) => void) | null = null;
  #waiterBuffer: Uint8Array | null = null;
  #closed = false;

  /** Use {@linkcode SimNetwork.listen} instead. */
  constructor(net: SimNetwork, addr: Deno.NetAddr) {
    this.#net = net;
    this.#addr = addr;
  }

  /** Local address (changes on {@linkcode SimPacketConn.rebind}). */
  get addr(): Deno.NetAddr {
    return this.#addr;
  }

  /** Move to a new port, like a NAT rebinding: peers see a new source address. */
  rebind(): Deno.NetAddr {
    this.#addr = this.#net._rebind(this, this.#addr);
    return this.#addr;
  }

  receive(buffer: Uint8Array): Promise<[Uint8Array, Deno.NetAddr] | null> {
    if (this.#closed) return Promise.resolve(null);
    const next = this.#queue.shift();
    if (next) return Promise.resolve(copyInto(buffer, next));
    return new Promise((resolve) => {
      this.#waiter = resolve;
      this.#waiterBuffer = buffer;
    });
  }

  send(data: Uint8Array, addr: Deno.NetAddr): void {
    if (this.#closed) return;
    this.#net._route(data, this.#addr, addr);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#net._remove(this);
    this.#queue = [];
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.(null);
  }

  /** @internal */
  _deliver(data: Uint8Array, from: Deno.NetAddr, limit: number): boolean {
    if (this.#closed) return true;
    const waiter = this.#waiter;
    if (waiter) {
      this.#waiter = null;
      waiter(copyInto(this.#waiterBuffer!, [data, from]));
      return true;
    }
    if (this.#queue.length >= limit) return false;
    this.#queue.push([data, from]);
    return true;
  }
}

function copyInto(
  buffer: Uint8Array,
  [data, from]: [Uint8Array, Deno.NetAddr],
): [Uint8Array, Deno.NetAddr] {
  const n = Math.min(buffer.length, data.length);
  buffer.set(data.subarray(0, n));
  return [buffer.subarray(0, n), from];
}

function key(addr: Deno.NetAddr): string {
  return `${addr.hostname}:${addr.port}`;
}
