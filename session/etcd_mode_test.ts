import assert from "node:assert/strict";
import { AppError } from "../kernel/mod.ts";
import { connectEtcd } from "../kernel/etcd.ts";
import { ServiceResolver } from "../kernel/discovery.ts";
import { ETCD_BINARY, freePort, needs, startEtcd } from "../kernel/testing.ts";
import { makeRecord } from "./_store_suite.ts";
import { openEtcdSessions } from "./etcd_mode.ts";

const tools = needs(ETCD_BINARY);

Deno.test({
  name: "openEtcdSessions() stores sessions, registers the instance and deregisters on close" +
    tools.note,
  ignore: tools.ignore,
  async fn() {
    await using server = await startEtcd();
    const config = { endpoints: [server.endpoint], prefix: "/af" };
    const sessions = await openEtcdSessions(config);
    const observer = await connectEtcd(config);
    const resolver = await ServiceResolver.open(observer, "session");
    try {
      await sessions.register({ tcp: "127.0.0.1:50051", quantum: "127.0.0.1:50061" });
      const [instance] = await resolver.waitFor((list) => list.length === 1);
      assert.equal(instance!.quantum, "127.0.0.1:50061");
      const record = makeRecord({ now: Date.now() });
      await sessions.store.insert(record, { now: Date.now(), maxPerUser: 5, onLimit: "refuse" });
      assert.ok(await observer.client.get(`/af/session/s/${record.id}`).exists());
      await sessions.close();
      await resolver.waitFor((list) => list.length === 0);
    } finally {
      await sessions.close();
      await resolver.close();
      observer.close();
    }
  },
});

Deno.test("openEtcdSessions() fails at start-up with UNAVAILABLE naming the endpoint", async () => {
  const endpoint = `http://127.0.0.1:${freePort()}`;
  await assert.rejects(
    openEtcdSessions({ endpoints: [endpoint], dialTimeoutMs: 300 }),
    (error) =>
      error instanceof AppError && error.status === "UNAVAILABLE" &&
      error.message.includes(endpoint),
  );
});
