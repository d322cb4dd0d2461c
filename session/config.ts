/**
 * Configuration of the session service as a zod schema for the kernel's `loadConfig`
 * (file via `--config`, environment `AETHERFLOW_SESSION_<KEY>`, e.g.
 * `AETHERFLOW_SESSION_PORT=50061`, `AETHERFLOW_SESSION_METADATA__MAX_ENTRIES=64`).
 * Every key has a default, so no file is needed.
 *
 * @example
 * ```ts
 * const config = await loadConfig(SessionConfigSchema, { service: "session" });
 * const defaults = SessionConfigSchema.parse({});
 * ```
 * @module
 */
import { z } from "zod";
import { etcdConfigSchema } from "../kernel/etcd_config.ts";

const port = z.number().int().min(0).max(65_535);

/** Limits on a session's metadata map. */
export const MetadataLimitsSchema = z.object({
  /** Maximum entries. */
  maxEntries: z.number().int().min(0).max(1000).default(32),
  /** Maximum UTF-8 bytes of one key. */
  maxKeyBytes: z.number().int().min(1).max(1024).default(128),
  /** Maximum UTF-8 bytes of one value. */
  maxValueBytes: z.number().int().min(0).max(16_384).default(1024),
  /** Maximum UTF-8 bytes of all keys and values (KV values are capped at 64 KiB). */
  maxTotalBytes: z.number().int().min(0).max(32_768).default(8192),
}).strict();

/** The session service's configuration. */
export const SessionConfigSchema = z.object({
  /** Interface to listen on (TCP and Quantum). */
  host: z.string().min(1).default("127.0.0.1"),
  /** gRPC over TCP port (0 = any free port). */
  port: port.default(50051),
  /** gRPC over Quantum UDP port; 0 turns the Quantum listener off. */
  quantumPort: port.default(0),
  /** HTTP port serving Prometheus `/metrics` and `/health`; 0 turns it off. */
  metricsPort: port.default(0),
  /** Directory holding the KV file `session.kv` (created if missing). */
  dataDir: z.string().min(1).default("data/session"),
  /**
   * Storage backend: "kv" (Deno KV file, the default), "memory" (lost on exit) or "etcd"
   * (shared by several instances, TTL by leases, registered for discovery; see etcd_mode.ts).
   */
  storage: z.enum(["kv", "memory", "etcd"]).default("kv"),
  /** etcd endpoints, key prefix, TLS and auth for `storage: etcd`. */
  etcd: etcdConfigSchema.prefault({}),
  /** TTL of a new session that names none, seconds. */
  defaultTtlSeconds: z.number().int().min(1).max(31_536_000).default(1800),
  /** Largest TTL a caller may ask for, seconds. */
  maxTtlSeconds: z.number().int().min(1).max(31_536_000).default(86_400),
  /** Interval of the background expiry sweep, ms. */
  sweepIntervalMs: z.number().int().min(10).max(86_400_000).default(30_000),
  /** Live sessions per user. */
  maxSessionsPerUser: z.number().int().min(1).max(1000).default(10),
  /** At the per-user limit: evict the oldest session, or refuse the new one. */
  userLimitPolicy: z.enum(["evict_oldest", "refuse"]).default("evict_oldest"),
  /** Metadata limits. */
  metadata: MetadataLimitsSchema.prefault({}),
  /** Merge concurrent KV writes into shared commits. */
  groupCommit: z.boolean().default(true),
  /** How long shutdown waits for in-flight calls before cancelling them, ms. */
  shutdownTimeoutMs: z.number().int().min(0).max(600_000).default(10_000),
  /** After the last call finished, how long shutdown waits for its response to be written, ms. */
  shutdownLingerMs: z.number().int().min(0).max(10_000).default(100),
  /** Log level. */
  logLevel: z.enum(["debug", "info", "warn", "error"]).default("info"),
}).strict().refine((config) => config.defaultTtlSeconds <= config.maxTtlSeconds, {
  message: "must not exceed maxTtlSeconds",
  path: ["defaultTtlSeconds"],
});

/** A validated session configuration. */
export type SessionConfig = z.output<typeof SessionConfigSchema>;
