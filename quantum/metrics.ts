/**
 * Prometheus metrics of Quantum listeners (prom-client), labelled by listener name only
 * (never by connection id or address): open connections, connections accepted, RTT
 * histogram, packets, retransmits, FEC recoveries, drops by reason and goodput (payload bytes
 * delivered in order to the application). Counters are sampled from `stats()` on every
 * scrape; a connection's final counters are kept when it closes, so totals never go back.
 *
 * The RTT histogram observes the smoothed RTT of every open connection at each scrape and
 * once more when a connection closes (Quantum's `stats()` exposes the estimate, not the
 * individual samples).
 *
 * @example
 * ```ts
 * const metrics = new QuantumMetrics(registry);
 * const listener = metrics.observeListener("statesync", listen({ port: 9000 }));
 * for await (const conn of listener) serve(conn); // conn counts its goodput
 * ```
 * @module
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type {
  CloseInfo,
  ConnectionState,
  ConnectionStats,
  DropReason,
  QuantumConnection,
} from "./connection.ts";
import type { ListenerStats, QuantumListener } from "./endpoint.ts";

/** RTT buckets, seconds: 50 µs (loopback) .. 1 s. */
const RTT_BUCKETS = [
  0.00005,
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
];

/** Counters summed over a listener's connections. */
interface Totals {
  packetsSent: number;
  packetsReceived: number;
  retransmits: number;
  fecRecovered: number;
  goodputBytes: number;
  drops: Map<string, number>;
}

function emptyTotals(): Totals {
  return {
    packetsSent: 0,
    packetsReceived: 0,
    retransmits: 0,
    fecRecovered: 0,
    goodputBytes: 0,
    drops: new Map(),
  };
}

interface Tracked {
  conn: QuantumConnection;
  goodput: { bytes: number };
}

interface Group {
  listener: QuantumListener | undefined;
  live: Set<Tracked>;
  closed: Totals;
  accepted: number;
}

/** Metrics of one or more named Quantum listeners (and dialled connections). */
export class QuantumMetrics {
  #groups = new Map<string, Group>();
  #rtt: Histogram<"listener">;

  constructor(registry: Registry) {
    const registers = [registry];
    const groups = this.#groups;
    const sum = (group: Group): Totals => {
      const totals = { ...group.closed, drops: new Map(group.closed.drops) };
      for (const tracked of group.live) {
        addStats(totals, tracked.conn.stats(), tracked.goodput.bytes);
      }
      const listenerDrops: ListenerStats["drops"] = group.listener?.stats().drops ?? {};
      for (const [reason, count] of Object.entries(listenerDrops)) {
        totals.drops.set(reason, (totals.drops.get(reason) ?? 0) + (count ?? 0));
      }
      return totals;
    };
    const counter = (name: string, help: string, read: (totals: Totals) => number) =>
      new Counter({
        name,
        help,
        labelNames: ["listener"],
        registers,
        collect() {
          this.reset();
          for (const [listener, group] of groups) this.inc({ listener }, read(sum(group)));
        },
      });
    new Gauge({
      name: "aetherflow_quantum_connections",
      help: "Open Quantum connections per listener.",
      labelNames: ["listener"],
      registers,
      collect() {
        this.reset();
        for (const [listener, group] of groups) {
          this.set({ listener }, group.listener?.stats().connections ?? group.live.size);
        }
      },
    });
    new Counter({
      name: "aetherflow_quantum_connections_accepted_total",
      help: "Quantum connections accepted (or dialled) per listener.",
      labelNames: ["listener"],
      registers,
      collect() {
        this.reset();
        for (const [listener, group] of groups) this.inc({ listener }, group.accepted);
      },
    });
    counter(
      "aetherflow_quantum_packets_sent_total",
      "Quantum datagrams sent (including retransmissions).",
      (t) => t.packetsSent,
    );
    counter(
      "aetherflow_quantum_packets_received_total",
      "Quantum datagrams received for known connections.",
      (t) => t.packetsReceived,
    );
    counter(
      "aetherflow_quantum_retransmits_total",
      "Quantum data packets retransmitted.",
      (t) => t.retransmits,
    );
    counter(
      "aetherflow_quantum_fec_recoveries_total",
      "Quantum packets recovered by forward error correction.",
      (t) => t.fecRecovered,
    );
    counter(
      "aetherflow_quantum_goodput_bytes_total",
      "Payload bytes delivered in order to the application (no duplicates or retransmits).",
      (t) => t.goodputBytes,
    );
    new Counter({
      name: "aetherflow_quantum_drops_total",
      help: "Quantum datagrams dropped, by reason (listener and connections).",
      labelNames: ["listener", "reason"],
      registers,
      collect() {
        this.reset();
        for (const [listener, group] of groups) {
          for (const [reason, count] of sum(group).drops) this.inc({ listener, reason }, count);
        }
      },
    });
    this.#rtt = new Histogram({
      name: "aetherflow_quantum_rtt_seconds",
      help: "Smoothed RTT of open Quantum connections, sampled at each scrape and at close.",
      labelNames: ["listener"],
      buckets: RTT_BUCKETS,
      registers,
      collect() {
        for (const [listener, group] of groups) {
          for (const tracked of group.live) {
            const rtt = tracked.conn.stats().rttMs;
            if (rtt > 0) this.observe({ listener }, rtt / 1000);
          }
        }
      },
    });
  }

  #group(name: string): Group {
    let group = this.#groups.get(name);
    if (group === undefined) {
      group = { listener: undefined, live: new Set(), closed: emptyTotals(), accepted: 0 };
      this.#groups.set(name, group);
    }
    return group;
  }

  /**
   * Measure `listener` under `name`: returns a listener whose accepted connections are
   * tracked (use it instead of the original).
   */
  observeListener(name: string, listener: QuantumListener): QuantumListener {
    this.#group(name).listener = listener;
    const track = (conn: QuantumConnection | null) =>
      conn === null ? null : this.trackConnection(name, conn);
    return {
      get addr() {
        return listener.addr;
      },
      accept: async () => track(await listener.accept()),
      close: () => listener.close(),
      stats: () => listener.stats(),
      async *[Symbol.asyncIterator]() {
        for (;;) {
          const conn = track(await listener.accept());
          if (conn === null) return;
          yield conn;
        }
      },
    };
  }

  /**
   * Track one connection under `name` until it closes; returns the connection to use in its
   * place (its `readable` counts goodput).
   */
  trackConnection(name: string, conn: QuantumConnection): QuantumConnection {
    const group = this.#group(name);
    const tracked: Tracked = { conn, goodput: { bytes: 0 } };
    group.accepted++;
    group.live.add(tracked);
    void conn.closed.then(() => {
      const stats = conn.stats();
      if (stats.rttMs > 0) this.#rtt.observe({ listener: name }, stats.rttMs / 1000);
      addStats(group.closed, stats, tracked.goodput.bytes);
      group.live.delete(tracked);
    });
    return new CountedConnection(conn, tracked.goodput);
  }
}

function addStats(totals: Totals, stats: ConnectionStats, goodputBytes: number): void {
  totals.packetsSent += stats.packetsSent;
  totals.packetsReceived += stats.packetsReceived;
  totals.retransmits += stats.retransmits;
  totals.fecRecovered += stats.fecRecovered;
  totals.goodputBytes += goodputBytes;
  for (const [reason, count] of Object.entries(stats.drops) as [DropReason, number][]) {
    totals.drops.set(reason, (totals.drops.get(reason) ?? 0) + count);
  }
}

/** A connection whose readable counts the bytes the application reads. */
class CountedConnection implements QuantumConnection {
  #conn: QuantumConnection;
  readonly readable: ReadableStream<Uint8Array>;

  constructor(conn: QuantumConnection, goodput: { bytes: number }) {
    this.#conn = conn;
    this.readable = conn.readable.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          goodput.bytes += chunk.byteLength;
          controller.enqueue(chunk);
        },
      }),
    );
  }

  get id(): string {
    return this.#conn.id;
  }
  get remoteAddr(): Deno.NetAddr {
    return this.#conn.remoteAddr;
  }
  get writable(): WritableStream<Uint8Array> {
    return this.#conn.writable;
  }
  get state(): ConnectionState {
    return this.#conn.state;
  }
  get closed(): Promise<CloseInfo> {
    return this.#conn.closed;
  }
  stats(): ConnectionStats {
    return this.#conn.stats();
  }
  close(): Promise<void> {
    return this.#conn.close();
  }
  abort(reason?: string): void {
    this.#conn.abort(reason);
  }
}
