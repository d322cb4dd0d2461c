import assert from "node:assert/strict";
import { connectEtcd } from "../kernel/etcd.ts";
import { ServiceResolver } from "../kernel/discovery.ts";
import { ETCD_BINARY, needs, startEtcd } from "../kernel/testing.ts";
import { DocumentManager } from "./documents.ts";
import { openEtcdStateSync } from "./etcd_mode.ts";
import type { DocEvent } from "./events.ts";

const tools = needs(ETCD_BINARY);

Deno.test({
  name: "openEtcdStateSync() wires store, locks and events and registers for discovery" +
    tools.note,
  ignore: tools.ignore,
  async fn() {
    await using server = await startEtcd();
    const config = { endpoints: [server.endpoint], prefix: "/af" };
    const events: DocEvent[] = [];
    const applied = Promise.withResolvers<void>();
    const hub = {
      publish(event: DocEvent) {
        events.push(event);
        if (event.type === "operation_applied") applied.resolve();
      },
    };
    const parts = await openEtcdStateSync(config, hub);
    const observer = await connectEtcd(config);
    const resolver = await ServiceResolver.open(observer, "statesync");
    const documents = new DocumentManager(parts.store, {
      events: parts.events,
      locks: parts.locks,
    });
    const invalidated: [string, number][] = [];
    parts.follow({ invalidate: (id: string, v: number) => invalidated.push([id, v]) });
    try {
      await parts.register({ tcp: "127.0.0.1:50052", quantum: "" });
      await resolver.waitFor((list) => list.length === 1);
      const doc = await documents.create("alice", { name: "d", type: "json", content: {} });
      const lock = await parts.locks.acquire("bob", { documentId: doc.id, ttlMs: 5000 });
      await documents.apply("alice", {
        documentId: doc.id,
        baseVersion: 0,
        sessionId: "s",
        clientOpId: "c1",
        op: [{ path: ["x"], action: { type: "set", value: 1 } }],
      }).then(
        () => assert.fail("a write under bob's lock must be refused"),
        (error) => assert.match(String(error), /locked by bob/),
      );
      await parts.locks.release("bob", doc.id, lock.id);
      await documents.apply("alice", {
        documentId: doc.id,
        baseVersion: 0,
        sessionId: "s",
        clientOpId: "c2",
        op: [{ path: ["x"], action: { type: "set", value: 1 } }],
      });
      await applied.promise;
      assert.deepEqual(invalidated, [[doc.id, 1]]);
      assert.ok(events.some((e) => e.type === "lock_acquired" && e.lock?.id === lock.id));
      assert.equal(await observer.client.get(`/af/statesync/ver/${doc.id}`).string(), "1");
      await documents.close();
      await parts.close();
      await resolver.waitFor((list) => list.length === 0);
    } finally {
      await documents.close();
      await parts.close();
      await resolver.close();
      observer.close();
    }
  },
});
