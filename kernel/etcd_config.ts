/**
 * The etcd part of a service config, as a zod schema with defaults. Kept apart from
 * `etcd.ts` so that config modules can embed it without loading the etcd client.
 *
 * @example
 * ```ts
 * const Schema = z.object({ storage: z.enum(["kv", "etcd"]), etcd: etcdConfigSchema.prefault({}) });
 * ```
 * @module
 */
import { z } from "zod";

/** The etcd part of a service config (a zod schema with defaults). */
export const etcdConfigSchema = z.object({
  /** Client URLs, e.g. `["http://127.0.0.1:2379"]` (in the environment: a YAML/JSON list). */
  endpoints: z.array(z.string().min(1)).min(1).default(["http://127.0.0.1:2379"]),
  /** Root of every key this deployment writes (no trailing slash). */
  prefix: z.string().default("/aetherflow"),
  /** How long the start-up check waits for etcd, in ms. */
  dialTimeoutMs: z.number().int().positive().default(3000),
  /** TLS files (PEM): `caFile` alone = server-verified TLS, with cert and key = mutual TLS. */
  tls: z.object({
    caFile: z.string().min(1).optional(),
    certFile: z.string().min(1).optional(),
    keyFile: z.string().min(1).optional(),
  }).strict().prefault({}),
  /** etcd user authentication (none when unset). */
  auth: z.object({
    username: z.string().min(1).optional(),
    password: z.string().optional(),
  }).strict().prefault({}),
}).strict();

/** Parsed etcd settings. */
export type EtcdConfig = z.infer<typeof etcdConfigSchema>;
