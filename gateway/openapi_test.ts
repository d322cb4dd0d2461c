import assert from "node:assert/strict";
import { createGateway } from "./app.ts";
import { fakeBackends, testConfig, testUsers } from "./_testing.ts";

Deno.test("openapi.json lists exactly the gateway's routes and is served", async () => {
  const gateway = await createGateway({
    config: testConfig(),
    backends: fakeBackends(),
    users: await testUsers(),
  });
  const spec = JSON.parse(
    await Deno.readTextFile(new URL("./openapi.json", import.meta.url)),
  ) as { openapi: string; paths: Record<string, Record<string, unknown>> };
  assert.match(spec.openapi, /^3\./);
  const documented = new Set<string>();
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const method of Object.keys(methods)) {
      documented.add(`${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ":$1")}`);
    }
  }
  const routed = new Set(gateway.router.routes.map((r) => `${r.method} ${r.path}`));
  assert.deepEqual([...documented].filter((r) => !routed.has(r)), [], "documented but missing");
  assert.deepEqual([...routed].filter((r) => !documented.has(r)), [], "routed but undocumented");
  const served = await gateway.handler(new Request("http://gw/api/v1/openapi.json"));
  assert.equal(served.status, 200);
  assert.deepEqual(await served.json(), spec);
});
