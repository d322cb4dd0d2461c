import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../kernel/mod.ts";
import { SessionConfigSchema } from "./config.ts";

Deno.test("session config has working defaults and takes AETHERFLOW_SESSION_* overrides", async () => {
  const config = await loadConfig(SessionConfigSchema, {
    service: "session",
    env: {
      AETHERFLOW_SESSION_PORT: "50061",
      AETHERFLOW_SESSION_STORAGE: "memory",
      AETHERFLOW_SESSION_METADATA__MAX_ENTRIES: "64",
      AETHERFLOW_SESSION_USER_LIMIT_POLICY: "refuse",
    },
  });
  assert.equal(config.port, 50061);
  assert.equal(config.storage, "memory");
  assert.equal(config.metadata.maxEntries, 64);
  assert.equal(config.metadata.maxTotalBytes, 8192);
  assert.equal(config.userLimitPolicy, "refuse");
  assert.equal(config.quantumPort, 0);
  assert.equal(config.dataDir, "data/session");
});

Deno.test("session config rejects a default TTL above the maximum and unknown keys", async () => {
  await assert.rejects(
    loadConfig(SessionConfigSchema, {
      service: "session",
      env: {
        AETHERFLOW_SESSION_DEFAULT_TTL_SECONDS: "100",
        AETHERFLOW_SESSION_MAX_TTL_SECONDS: "10",
      },
    }),
    (error: unknown) => error instanceof ConfigError && /defaultTtlSeconds/.test(error.message),
  );
  await assert.rejects(
    loadConfig(SessionConfigSchema, { service: "session", env: { AETHERFLOW_SESSION_PROT: "1" } }),
    (error: unknown) => error instanceof ConfigError && /prot/.test(error.message),
  );
});
