/**
 * Prometheus metrics of the session service: live sessions by state, sessions created,
 * expired (removed by the sweeper), deleted and heartbeats — plus the gRPC server metrics
 * (`kernel/metrics.ts`) on the same registry. No session or user ids as labels.
 *
 * The counters come from {@link MeteredSessionManager}, a `SessionManager` that counts what
 * it does; the gauges are read from the store on every scrape.
 *
 * @example
 * ```ts
 * const metrics = new SessionMetrics(createMetricsRegistry());
 * const manager = new MeteredSessionManager(store, metrics, { defaultTtlSeconds: 60 });
 * metrics.observe(manager);
 * await using endpoint = serveMetrics(metrics.registry, { port: 9091 });
 * ```
 * @module
 */
import { Counter, Gauge, GrpcServerMetrics, type Registry } from "../kernel/mod.ts";
import { type QuantumListener, QuantumMetrics } from "../quantum/mod.ts";
import {
  type CreateSessionInput,
  SessionManager,
  type SessionManagerOptions,
  type SessionWithToken,
} from "./manager.ts";
import type { Session } from "./model.ts";
import type { SessionStore } from "./store.ts";

/** The session service's metrics. */
export class SessionMetrics {
  /** The registry to serve (also holds {@link grpc}). */
  readonly registry: Registry;
  /** gRPC server call metrics. */
  readonly grpc: GrpcServerMetrics;
  /** Sessions created. */
  readonly created: Counter;
  /** Heartbeats accepted. */
  readonly heartbeats: Counter;
  /** Expired sessions removed by the sweeper. */
  readonly expired: Counter;
  /** Sessions deleted by a caller. */
  readonly deleted: Counter;
  #live: Gauge<"state">;
  #quantum: QuantumMetrics | undefined;
  #manager: { count(query: { state: "active" | "idle" }): Promise<number> } | undefined;

  constructor(registry: Registry) {
    this.registry = registry;
    this.grpc = new GrpcServerMetrics(registry);
    const registers = [registry];
    this.created = new Counter({
      name: "aetherflow_session_sessions_created_total",
      help: "Sessions created.",
      registers,
    });
    this.heartbeats = new Counter({
      name: "aetherflow_session_heartbeats_total",
      help: "Session heartbeats accepted.",
      registers,
    });
    this.expired = new Counter({
      name: "aetherflow_session_sessions_expired_total",
      help: "Expired sessions removed by the background sweep.",
      registers,
    });
    this.deleted = new Counter({
      name: "aetherflow_session_sessions_deleted_total",
      help: "Sessions deleted by a caller.",
      registers,
    });
    const manager = () => this.#manager;
    this.#live = new Gauge({
      name: "aetherflow_session_sessions",
      help: "Live (unexpired) sessions by state (active, idle).",
      labelNames: ["state"],
      registers,
      async collect() {
        const source = manager();
        if (source === undefined) return;
        for (const state of ["active", "idle"] as const) {
          this.set({ state }, await source.count({ state }));
        }
      },
    });
  }

  /**
   * Measure the service's Quantum listener on this registry (`aetherflow_quantum_*`,
   * listener="session"); use the returned listener in place of `listener`.
   */
  observeQuantum(listener: QuantumListener): QuantumListener {
    this.#quantum ??= new QuantumMetrics(this.registry);
    return this.#quantum.observeListener("session", listener);
  }

  /** Read the live-session gauges from `manager` on every scrape. */
  observe(manager: { count(query: { state: "active" | "idle" }): Promise<number> }): void {
    this.#manager = manager;
  }
}

/** A {@link SessionManager} that counts creations, heartbeats, deletions and expirations. */
export class MeteredSessionManager extends SessionManager {
  #metrics: SessionMetrics;

  constructor(store: SessionStore, metrics: SessionMetrics, options: SessionManagerOptions = {}) {
    super(store, options);
    this.#metrics = metrics;
  }

  override async create(input: CreateSessionInput): Promise<SessionWithToken> {
    const created = await super.create(input);
    this.#metrics.created.inc();
    return created;
  }

  override async heartbeat(
    sessionId: string,
    options: { ttlSeconds?: number } = {},
  ): Promise<Session> {
    const session = await super.heartbeat(sessionId, options);
    this.#metrics.heartbeats.inc();
    return session;
  }

  override async delete(sessionId: string): Promise<void> {
    await super.delete(sessionId);
    this.#metrics.deleted.inc();
  }

  override async sweep(limit?: number): Promise<number> {
    const removed = await super.sweep(limit);
    this.#metrics.expired.inc(removed);
    return removed;
  }
}
