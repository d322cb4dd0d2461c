import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../kernel/mod.ts";
import { StateSyncConfigSchema } from "./config.ts";

Deno.test("the statesync config has defaults for every key", () => {
  const config = StateSyncConfigSchema.parse({});
  assert.equal(config.port, 50052);
  assert.equal(config.storage, "kv");
  assert.equal(config.quantumPort, 0);
  assert.equal(config.subscriber.maxQueueEvents, 1024);
  assert.equal(config.subscriber.maxQueueBytes, 1024 * 1024);
  assert.equal(config.locks.defaultTtlMs, 30_000);
  assert.equal(config.limits.maxOpBytes > 0, true);
});

Deno.test("statesync config reads nested environment overrides and names bad keys", async () => {
  const config = await loadConfig(StateSyncConfigSchema, {
    service: "statesync",
    env: {
      AETHERFLOW_STATESYNC_PORT: "0",
      AETHERFLOW_STATESYNC_STORAGE: "memory",
      AETHERFLOW_STATESYNC_SUBSCRIBER__MAX_QUEUE_EVENTS: "16",
      AETHERFLOW_STATESYNC_LOCKS__DEFAULT_TTL_MS: "500",
    },
  });
  assert.equal(config.port, 0);
  assert.equal(config.storage, "memory");
  assert.equal(config.subscriber.maxQueueEvents, 16);
  assert.equal(config.locks.defaultTtlMs, 500);
  await assert.rejects(
    loadConfig(StateSyncConfigSchema, {
      service: "statesync",
      env: { AETHERFLOW_STATESYNC_LOCKS__DEFAULT_TTL_MS: "0" },
    }),
    (e) => e instanceof ConfigError && /locks\.defaultTtlMs/.test(e.message),
  );
  await assert.rejects(
    loadConfig(StateSyncConfigSchema, {
      service: "statesync",
      env: { AETHERFLOW_STATESYNC_NOPE: "1" },
    }),
    (e) => e instanceof ConfigError && /nope/i.test(e.message),
  );
});
