/**
 * Configuration of the statesync service as a zod schema for the kernel's `loadConfig`
 * (file via `--config`, environment `AETHERFLOW_STATESYNC_<KEY>`, e.g.
 * `AETHERFLOW_STATESYNC_PORT=50062`, `AETHERFLOW_STATESYNC_SUBSCRIBER__MAX_QUEUE_EVENTS=512`).
 * Every key has a default, so no file is needed.
 *
 * @example
 * ```ts
 * const config = await loadConfig(StateSyncConfigSchema, { service: "statesync" });
 * const defaults = StateSyncConfigSchema.parse({});
 * ```
 * @module
 */
import { z } from "zod";
import { etcdConfigSchema } from "../kernel/etcd_config.ts";
import { LimitsSchema } from "./limits.ts";

const port = z.number().int().min(0).max(65_535);

/** Bounds of every subscriber's outgoing queue and catch-up. */
export const SubscriberConfigSchema = z.object({
  /** Events queued per subscriber before it is disconnected as slow. */
  maxQueueEvents: z.number().int().min(1).max(1_000_000).default(1024),
  /** Bytes (JSON size) queued per subscriber before it is disconnected as slow. */
  maxQueueBytes: z.number().int().min(1024).max(1024 * 1024 * 1024).default(1024 * 1024),
  /** Most missed operations replayed on resubscribe; a larger gap gets resync_required. */
  maxCatchUp: z.number().int().min(0).max(10_000_000).default(10_000),
  /** Most subscribers per document. */
  maxPerDocument: z.number().int().min(1).max(1_000_000).default(10_000),
}).strict();

/** Lock TTL and wait bounds. */
export const LockConfigSchema = z.object({
  /** TTL of a lock that names none, ms. */
  defaultTtlMs: z.number().int().min(1).max(3_600_000).default(30_000),
  /** Largest TTL a caller may ask for, ms. */
  maxTtlMs: z.number().int().min(1).max(3_600_000).default(3_600_000),
  /** Longest wait_ms accepted. */
  maxWaitMs: z.number().int().min(0).max(600_000).default(60_000),
}).strict();

/** Presence TTL and size bounds. */
export const PresenceConfigSchema = z.object({
  /** TTL of presence that names none, ms. */
  defaultTtlMs: z.number().int().min(1).max(3_600_000).default(30_000),
  /** Largest presence state, UTF-8 bytes of its JSON text. */
  maxStateBytes: z.number().int().min(16).max(1024 * 1024).default(4096),
  /** Most active users per document. */
  maxUsersPerDocument: z.number().int().min(1).max(1_000_000).default(1000),
}).strict();

/** The statesync service's configuration. */
export const StateSyncConfigSchema = z.object({
  /** Interface to listen on (TCP and Quantum). */
  host: z.string().min(1).default("127.0.0.1"),
  /** gRPC over TCP port (0 = any free port). */
  port: port.default(50052),
  /** gRPC over Quantum UDP port; 0 turns the Quantum listener off. */
  quantumPort: port.default(0),
  /** HTTP port serving Prometheus `/metrics` and `/health`; 0 turns it off. */
  metricsPort: port.default(0),
  /** Directory holding the KV file `statesync.kv` (created if missing). */
  dataDir: z.string().min(1).default("data/statesync"),
  /**
   * Storage backend: "kv" (Deno KV file, the default), "memory" (lost on exit) or "etcd"
   * (shared by several instances: documents, locks, events and discovery, see etcd_mode.ts).
   */
  storage: z.enum(["kv", "memory", "etcd"]).default("kv"),
  /** etcd endpoints, key prefix, TLS and auth for `storage: etcd`. */
  etcd: etcdConfigSchema.prefault({}),
  /** A snapshot of the content is stored every this many operations. */
  snapshotEvery: z.number().int().min(1).max(1_000_000).default(100),
  /** Document and operation size limits. */
  limits: LimitsSchema.prefault({}),
  /** Subscriber queue bounds. */
  subscriber: SubscriberConfigSchema.prefault({}),
  /** Lock defaults. */
  locks: LockConfigSchema.prefault({}),
  /** Presence defaults. */
  presence: PresenceConfigSchema.prefault({}),
  /** SubmitOperations requests in flight per stream before reading pauses. */
  maxInFlightPerStream: z.number().int().min(1).max(1_000_000).default(4096),
  /** How long shutdown waits for in-flight calls before cancelling them, ms. */
  shutdownTimeoutMs: z.number().int().min(0).max(600_000).default(10_000),
  /** Log level. */
  logLevel: z.enum(["debug", "info", "warn", "error"]).default("info"),
}).strict().refine((config) => config.locks.defaultTtlMs <= config.locks.maxTtlMs, {
  message: "must not exceed locks.maxTtlMs",
  path: ["locks", "defaultTtlMs"],
});

/** A validated statesync configuration. */
export type StateSyncConfig = z.output<typeof StateSyncConfigSchema>;
