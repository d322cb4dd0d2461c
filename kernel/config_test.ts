import assert from "node:assert/strict";
import { z } from "zod";
import { ConfigError, configPathFromArgs, loadConfig } from "./config.ts";
import { tempDir } from "./testing.ts";

const Schema = z.object({
  port: z.number().int().min(0).max(65535).default(8080),
  host: z.string().default("127.0.0.1"),
  debug: z.boolean().default(false),
  storage: z.object({
    kind: z.enum(["kv", "memory"]).default("kv"),
    dataDir: z.string().default("./data"),
  }).strict().default({ kind: "kv", dataDir: "./data" }),
}).strict();

Deno.test("loadConfig() gives defaults with no file and no environment", async () => {
  const config = await loadConfig(Schema, { service: "gateway", env: {} });
  assert.deepEqual(config, {
    port: 8080,
    host: "127.0.0.1",
    debug: false,
    storage: { kind: "kv", dataDir: "./data" },
  });
});

Deno.test("loadConfig() reads YAML and JSON files, then applies environment overrides", async () => {
  await using dir = await tempDir();
  const yamlFile = `${dir.path}/gateway.yaml`;
  await Deno.writeTextFile(yamlFile, "port: 9000\nstorage:\n  kind: memory\n");
  const config = await loadConfig(Schema, {
    service: "gateway",
    file: yamlFile,
    env: {
      AETHERFLOW_GATEWAY_DEBUG: "true",
      AETHERFLOW_GATEWAY_STORAGE__DATA_DIR: "/var/lib/af",
      AETHERFLOW_SESSION_PORT: "1", // another service's: ignored
    },
  });
  assert.equal(config.port, 9000);
  assert.equal(config.debug, true);
  assert.deepEqual(config.storage, { kind: "memory", dataDir: "/var/lib/af" });

  const jsonFile = `${dir.path}/gateway.json`;
  await Deno.writeTextFile(jsonFile, JSON.stringify({ host: "0.0.0.0" }));
  assert.equal(
    (await loadConfig(Schema, { service: "gateway", file: jsonFile, env: {} })).host,
    "0.0.0.0",
  );
});

Deno.test("loadConfig() rejects a wrong type with a message naming the key and source", async () => {
  await assert.rejects(
    loadConfig(Schema, { service: "gateway", env: { AETHERFLOW_GATEWAY_PORT: "abc" } }),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /port/);
      assert.match(error.message, /AETHERFLOW_GATEWAY_PORT/);
      return true;
    },
  );
  await using dir = await tempDir();
  const file = `${dir.path}/c.yaml`;
  await Deno.writeTextFile(file, 'port: "abc"\n');
  await assert.rejects(loadConfig(Schema, { service: "gateway", file, env: {} }), /port.*c\.yaml/);
});

Deno.test("loadConfig() rejects unknown keys, out-of-range values and unreadable files", async () => {
  await assert.rejects(
    loadConfig(Schema, { service: "gateway", env: { AETHERFLOW_GATEWAY_PROT: "1" } }),
    /prot/,
  );
  await assert.rejects(
    loadConfig(Schema, { service: "gateway", env: { AETHERFLOW_GATEWAY_STORAGE__KIND: "sql" } }),
    /storage\.kind/,
  );
  await assert.rejects(
    loadConfig(Schema, { service: "gateway", env: { AETHERFLOW_GATEWAY_PORT: "70000" } }),
    /port/,
  );
  await assert.rejects(
    loadConfig(Schema, { service: "gateway", file: "/nonexistent/x.yaml", env: {} }),
    ConfigError,
  );
  await using dir = await tempDir();
  const file = `${dir.path}/list.yaml`;
  await Deno.writeTextFile(file, "- 1\n- 2\n");
  await assert.rejects(loadConfig(Schema, { service: "gateway", file, env: {} }), /mapping/);
});

Deno.test("configPathFromArgs() finds --config in both forms", () => {
  assert.equal(configPathFromArgs(["--config", "a.yaml"]), "a.yaml");
  assert.equal(configPathFromArgs(["x", "--config=b.yaml"]), "b.yaml");
  assert.equal(configPathFromArgs([]), undefined);
});
