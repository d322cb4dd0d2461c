import assert from "node:assert/strict";
import { ETCD_BINARY, freePort, freeUdpPort, needs, startEtcd, tempDir } from "./testing.ts";

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

const etcdTool = needs(ETCD_BINARY);
Deno.test({
  name: "startEtcd() runs a real etcd that stores and returns a key" + etcdTool.note,
  ignore: etcdTool.ignore,
}, async () => {
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

Deno.test("needs() ignores a test outside CI only when a tool is missing, naming it", () => {
  const ci = Deno.env.get("CI");
  try {
    Deno.env.delete("CI");
    assert.deepEqual(needs("sh"), { ignore: false, note: "" });
    const missing = needs("sh", "no-such-tool-aetherflow");
    assert.equal(missing.ignore, true);
    assert.match(missing.note, /NOT RUN: no-such-tool-aetherflow missing/);
    Deno.env.set("CI", "true");
    assert.equal(needs("no-such-tool-aetherflow").ignore, false);
  } finally {
    if (ci === undefined) Deno.env.delete("CI");
    else Deno.env.set("CI", ci);
  }
});
