/**
 * Prometheus metrics of the statesync service: operations by outcome and their apply time,
 * conflicts by strategy, transforms, documents, subscribers, slow-subscriber disconnects,
 * locks and active users — plus the gRPC server metrics (`kernel/metrics.ts`) on the same
 * registry. No document, user or session ids as labels.
 *
 * @example
 * ```ts
 * const metrics = new StateSyncMetrics(createMetricsRegistry(), { documents, hub, locks, presence });
 * const service = new StateSyncService({ documents, hub, locks, presence, metrics });
 * await using endpoint = serveMetrics(metrics.registry, { port: 9092 });
 * ```
 * @module
 */
import {
  Counter,
  Gauge,
  GrpcServerMetrics,
  Histogram,
  LATENCY_BUCKETS,
  type Registry,
} from "../kernel/mod.ts";
import type { ApplyResult } from "./model.ts";

/** Where the sampled gauges and counters come from (read on every scrape). */
export interface StateSyncMetricSources {
  documents: { stats(): Promise<{ documents: number; transforms: number; openConflicts: number }> };
  hub: { subscriberCount(): number; readonly slowDisconnects: number };
  locks: { count(): number };
  presence: { activeUserCount(): number };
}

/** How an operation submission ended. */
export type ApplyOutcome =
  /** Applied and committed. */
  | "applied"
  /** A resend of an already applied operation (acknowledged, not applied again). */
  | "duplicate"
  /** Held as an unresolved conflict (manual strategy). */
  | "held"
  /** Rejected with an error. */
  | "failed";

/** The statesync service's metrics. */
export class StateSyncMetrics {
  /** The registry to serve (also holds {@link grpc}). */
  readonly registry: Registry;
  /** gRPC server call metrics. */
  readonly grpc: GrpcServerMetrics;
  /** The counter and histogram children of each outcome, bound once (this runs per op). */
  #byOutcome = {} as Record<
    ApplyOutcome,
    { operations: Counter.Internal; seconds: Histogram.Internal<"outcome"> }
  >;
  #conflicts: Counter<"strategy">;

  constructor(registry: Registry, sources: StateSyncMetricSources) {
    this.registry = registry;
    this.grpc = new GrpcServerMetrics(registry);
    const registers = [registry];
    const operations = new Counter({
      name: "aetherflow_statesync_operations_total",
      help: "Operations submitted, by outcome (applied, duplicate, held, failed).",
      labelNames: ["outcome"],
      registers,
    });
    const applySeconds = new Histogram({
      name: "aetherflow_statesync_apply_seconds",
      help: "Time to apply one operation (transform, apply, durable commit), by outcome.",
      labelNames: ["outcome"],
      buckets: [...LATENCY_BUCKETS],
      registers,
    });
    for (const outcome of ["applied", "duplicate", "held", "failed"] as const) {
      operations.inc({ outcome }, 0);
      this.#byOutcome[outcome] = {
        operations: operations.labels({ outcome }),
        seconds: applySeconds.labels({ outcome }),
      };
    }
    this.#conflicts = new Counter({
      name: "aetherflow_statesync_conflicts_total",
      help: "Conflicts detected between concurrent operations, by document conflict strategy.",
      labelNames: ["strategy"],
      registers,
    });
    for (const strategy of ["merge", "lww", "manual"]) this.#conflicts.inc({ strategy }, 0);
    const { documents, hub, locks, presence } = sources;
    new Gauge({
      name: "aetherflow_statesync_documents",
      help: "Documents stored (not deleted).",
      registers,
      async collect() {
        this.set((await documents.stats()).documents);
      },
    });
    new Gauge({
      name: "aetherflow_statesync_open_conflicts",
      help: "Conflicts waiting for a resolution.",
      registers,
      async collect() {
        this.set((await documents.stats()).openConflicts);
      },
    });
    new Counter({
      name: "aetherflow_statesync_transforms_total",
      help: "Pairwise transforms of an incoming operation past a concurrent one (this process).",
      registers,
      async collect() {
        this.reset();
        this.inc((await documents.stats()).transforms);
      },
    });
    new Gauge({
      name: "aetherflow_statesync_subscribers",
      help: "Open document subscriptions.",
      registers,
      collect() {
        this.set(hub.subscriberCount());
      },
    });
    new Counter({
      name: "aetherflow_statesync_slow_subscriber_disconnects_total",
      help: "Subscriptions cut off because their outgoing queue was full.",
      registers,
      collect() {
        this.reset();
        this.inc(hub.slowDisconnects);
      },
    });
    new Gauge({
      name: "aetherflow_statesync_locks",
      help: "Locks held.",
      registers,
      collect() {
        this.set(locks.count());
      },
    });
    new Gauge({
      name: "aetherflow_statesync_active_users",
      help: "Users with presence on some document.",
      registers,
      collect() {
        this.set(presence.activeUserCount());
      },
    });
  }

  /** Record one operation submission: its result (or undefined when it failed) and time. */
  observeApply(result: ApplyResult | undefined, seconds: number): void {
    const outcome: ApplyOutcome = result === undefined
      ? "failed"
      : result.duplicate
      ? "duplicate"
      : result.held
      ? "held"
      : "applied";
    const metrics = this.#byOutcome[outcome];
    metrics.operations.inc();
    metrics.seconds.observe(seconds);
    if (result !== undefined && !result.duplicate) {
      // Newly detected ones are open (manual) or auto_resolved (merge, lww); "resolved"
      // entries are earlier conflicts that this operation settled.
      for (const conflict of result.conflicts) {
        if (conflict.state !== "resolved") this.#conflicts.inc({ strategy: conflict.strategy });
      }
    }
  }
}
