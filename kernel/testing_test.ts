import assert from "node:assert/strict";
import { freePort, freeUdpPort, startEtcd, tempDir } from "./testing.ts";

Deno.test("tempDir() is removed on dispose", async () => {
  let path: string;
  {
    await using dir = await tempDir();
    path = dir.path;
    await Deno.writeTextFile(`${path}/f`, "x");
  }
  await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
});

Deno.test("freePort() and freeUdpPort() return bindable ports", () => {
  const tcp = Deno.listen({ hostname: "127.0.0.1", port: freePort() });
  tcp.close();
  const udp = Deno.listenDatagram({ hostname: "127.0.0.1", port: freeUdpPort(), transport: "udp" });
  udp.close();
});

Deno.test("startEtcd() runs a real etcd that stores and returns a key", async () => {
  await using etcd = await startEtcd();
  const key = btoa("aetherflow-test");
  const put = await fetch(`${etcd.endpoint}/v3/kv/put`, {
    method: "POST",
    body: JSON.stringify({ key, value: btoa("hello") }),
  });
  assert.equal(put.status, 200);
  await put.body?.cancel();
  const range = await fetch(`${etcd.endpoint}/v3/kv/range`, {
    method: "POST",
    body: JSON.stringify({ key }),
  });
  const body = await range.json();
  assert.equal(atob(body.kvs[0].value), "hello");
});
