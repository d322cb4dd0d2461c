import assert from "node:assert/strict";
import {
  ETCD_BINARY,
  freePort,
  freeUdpPort,
  metricSample,
  needs,
  seededRandom,
  spawnDeno,
  startEtcd,
  tempDir,
} from "./testing.ts";

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

Deno.test("spawnDeno() watches the child's stderr lines and stop() signals it and returns its status", async () => {
  await using dir = await tempDir();
  const script = `${dir.path}/child.ts`;
  await Deno.writeTextFile(
    script,
    // The signal listener is in place before "ready" is printed.
    `Deno.addSignalListener("SIGTERM", () => { console.error("bye"); Deno.exit(3); });
console.error("starting " + Deno.args.join(","));
console.error("ready on " + Deno.env.get("CHILD_PORT"));
setInterval(() => {}, 1000);
`,
  );
  await using child = spawnDeno(script, { args: ["a", "b"], env: { CHILD_PORT: "1234" } });
  assert.equal(await child.log.wait("ready"), "ready on 1234");
  assert.equal(await child.log.wait("starting"), "starting a,b", "an earlier line is found too");
  const status = await child.stop();
  assert.equal(status.code, 3);
  assert.deepEqual(child.log.lines, ["starting a,b", "ready on 1234", "bye"]);
  assert.equal(
    await child.log.wait("never printed"),
    "",
    "an ended log answers with an empty line",
  );
});

Deno.test("seededRandom() repeats its sequence for a seed and stays in [0, 1)", () => {
  const a = seededRandom(42);
  const b = seededRandom(42);
  const c = seededRandom(43);
  const first = Array.from({ length: 1000 }, () => a());
  assert.deepEqual(Array.from({ length: 1000 }, () => b()), first);
  assert.notDeepEqual(Array.from({ length: 1000 }, () => c()), first);
  assert.ok(first.every((x) => x >= 0 && x < 1));
  const mean = first.reduce((sum, x) => sum + x, 0) / first.length;
  assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
});

Deno.test("metricSample() reads a sample by name and label subset, 0 when absent", () => {
  const text = [
    "# HELP calls_total Calls.",
    "# TYPE calls_total counter",
    'calls_total{method="Get",code="OK"} 7',
    'calls_total{method="Get",code="NOT_FOUND"} 2',
    "calls_total_other 99",
    "up 1",
  ].join("\n");
  assert.equal(metricSample(text, "calls_total", { code: "NOT_FOUND" }), 2);
  assert.equal(metricSample(text, "calls_total", { method: "Get" }), 7);
  assert.equal(metricSample(text, "up"), 1);
  assert.equal(metricSample(text, "calls_total", { method: "Put" }), 0);
  assert.equal(metricSample(text, "missing"), 0);
});
