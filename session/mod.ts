/**
 * Session service: who is connected, with TTL, heartbeat, token rotation and per-user
 * limits, stored in Deno KV (default) or memory, served over gRPC
 * (`aetherflow.session.v1.SessionService`) with the standard health service.
 *
 * @example
 * ```ts
 * import { SessionConfigSchema, startSessionService, SessionClient } from "./session/mod.ts";
 * await using service = await startSessionService(SessionConfigSchema.parse({ port: 0 }));
 * using client = new SessionClient(service.address);
 * const { token } = await client.createSession({ userId: "u1" });
 * ```
 * @module
 */
export * from "./model.ts";
export * from "./store.ts";
export * from "./memory_store.ts";
export * from "./kv_store.ts";
export * from "./manager.ts";
export * from "./sweeper.ts";
export * from "./server.ts";
export * from "./client.ts";
export * from "./config.ts";
export * from "./service.ts";
