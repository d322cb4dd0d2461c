import assert from "node:assert/strict";
import { checkHealth } from "./healthcheck.ts";

Deno.test("checkHealth() is healthy on HTTP 2xx and unhealthy on 5xx, naming the status", async () => {
  let status = 200;
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("ok", { status }),
  );
  const url = `http://127.0.0.1:${server.addr.port}/ping`;
  assert.deepEqual(await checkHealth(url), { healthy: true, detail: "HTTP 200" });
  status = 503;
  assert.deepEqual(await checkHealth(url), { healthy: false, detail: "HTTP 503" });
});

Deno.test("checkHealth() rejects targets that are neither http(s):// nor grpc://", async () => {
  await assert.rejects(checkHealth("tcp://127.0.0.1:1"), TypeError);
  await assert.rejects(checkHealth("not a url"), TypeError);
});
