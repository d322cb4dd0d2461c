import assert from "node:assert/strict";
import { type Clock, ManualClock } from "../kernel/clock.ts";
import { connectEtcd, type EtcdConnection } from "../kernel/etcd.ts";
import { ETCD_BINARY, type EtcdServer, needs, startEtcd } from "../kernel/testing.ts";
import { DocumentManager } from "./documents.ts";
import type { DocEvent } from "./events.ts";
import { EtcdEventBridge } from "./events_etcd.ts";
import { EventHub, type Subscription } from "./hub.ts";
import { PresenceManager } from "./presence.ts";
import { EtcdDocumentStore } from "./store_etcd.ts";

const tools = needs(ETCD_BINARY);

let shared: Promise<EtcdServer> | undefined;
function server(): Promise<EtcdServer> {
  shared ??= startEtcd();
  return shared;
}

/** One StateSync "instance": its own etcd connection, store, hub, bridge and engine. */
interface Instance extends AsyncDisposable {
  hub: EventHub;
  documents: DocumentManager;
  presence: PresenceManager;
}

async function instance(prefix: string, clock?: Clock): Promise<Instance> {
  const etcd: EtcdConnection = await connectEtcd({
    endpoints: [(await server()).endpoint],
    prefix,
  });
  const store = new EtcdDocumentStore(etcd);
  const hub = new EventHub();
  const bridge = await EtcdEventBridge.open(etcd, hub, { store });
  const documents = new DocumentManager(store, { events: bridge, maxRetries: 200 });
  const presence = new PresenceManager({
    events: bridge,
    remote: bridge,
    ...(clock ? { clock } : {}),
  });
  return {
    hub,
    documents,
    presence,
    async [Symbol.asyncDispose]() {
      presence.close();
      await documents.close();
      await bridge.close();
      hub.close();
      await store.close();
      etcd.close();
    },
  };
}

/** Collect events from `sub` until `until` says stop. */
async function collect(
  sub: Subscription,
  until: (events: DocEvent[]) => boolean,
): Promise<DocEvent[]> {
  const events: DocEvent[] = [];
  for await (const event of sub) {
    events.push(event);
    if (until(events)) break;
  }
  return events;
}

Deno.test({
  name: "EtcdEventBridge: subscribers on both instances get every operation in version order, " +
    "no gaps or duplicates, and presence from the other instance" + tools.note,
  ignore: tools.ignore,
  async fn() {
    const prefix = `/events/${crypto.randomUUID()}`;
    await using a = await instance(prefix);
    await using b = await instance(prefix);
    const doc = await a.documents.create("alice", {
      name: "shared",
      type: "json",
      content: { n: 0, text: "" },
      permissions: { editors: ["bob"] },
    });
    const subs = [a, b].map((i) => {
      const sub = i.hub.subscribe(doc.id, { userId: "watcher" });
      sub.resume({ currentVersion: 0 });
      return sub;
    });
    const total = 40;
    const ops = (e: DocEvent[]) => e.filter((x) => x.type === "operation_applied");
    const received = subs.map((sub) =>
      collect(
        sub,
        (events) =>
          ops(events).length >= total && events.some((x) => x.type === "presence_updated"),
      )
    );
    // Writers on both instances, all starting from version 0 (stale after the first commit).
    await Promise.all(Array.from({ length: total }, (_, i) => {
      const instance = i % 2 ? b : a;
      const user = i % 2 ? "bob" : "alice";
      return instance.documents.apply(user, {
        documentId: doc.id,
        baseVersion: 0,
        sessionId: `s-${user}`,
        clientOpId: `op-${i}`,
        op: [
          { path: ["n"], action: { type: "increment", delta: 1 } },
          { path: ["text"], action: { type: "text_insert", offset: 0, text: "x" } },
        ],
      });
    }));
    // Presence set on instance A is seen by the subscriber on instance B (and A).
    a.presence.update(doc.id, "alice", { state: { cursor: 3 } });
    for (const events of await Promise.all(received)) {
      const versions = ops(events).map((e) => e.version);
      assert.deepEqual(versions, Array.from({ length: total }, (_, i) => i + 1));
      const presence = events.find((e) => e.type === "presence_updated")!;
      assert.equal(presence.userId, "alice");
      assert.deepEqual(presence.presence?.state, { cursor: 3 });
    }
    for (const sub of subs) sub.close();
  },
});

Deno.test({
  name: "EtcdEventBridge: presence set on one instance is listed by the other until it is " +
    "cleared or expires" + tools.note,
  ignore: tools.ignore,
  async fn() {
    const prefix = `/events/${crypto.randomUUID()}`;
    const clock = new ManualClock(1_700_000_000_000);
    await using a = await instance(prefix, clock);
    await using b = await instance(prefix, clock);
    const doc = await a.documents.create("alice", { name: "p", type: "json", content: {} });
    const sub = b.hub.subscribe(doc.id, { userId: "watcher" });
    sub.resume({ currentVersion: 0 });
    const events = sub[Symbol.asyncIterator]();
    /** Wait until B's hub delivers an event of `type` (B's mirror is updated before). */
    async function next(type: DocEvent["type"]): Promise<void> {
      for (;;) {
        const { value, done } = await events.next();
        assert.ok(!done, `subscription ended before ${type}`);
        if (value.type === type) return;
      }
    }

    assert.deepEqual(b.presence.list(doc.id), []);
    a.presence.update(doc.id, "alice", { sessionId: "s1", state: { cursor: 3 }, ttlMs: 60_000 });
    await next("presence_updated");
    const listed = b.presence.list(doc.id);
    assert.deepEqual(listed.map((r) => [r.userId, r.sessionId, r.state]), [
      ["alice", "s1", { cursor: 3 }],
    ]);

    // A clears it (no subscription of alice there: user_left): gone from B's list.
    assert.ok(a.presence.leave(doc.id, "alice"));
    await next("user_left");
    assert.deepEqual(b.presence.list(doc.id), []);

    // A record's expires_at is respected by B's clock even before A's expiry event.
    a.presence.update(doc.id, "alice", { state: { cursor: 5 }, ttlMs: 5_000 });
    await next("presence_updated");
    assert.equal(b.presence.list(doc.id).length, 1);
    clock.advance(5_000);
    assert.deepEqual(b.presence.list(doc.id), []);
    sub.close();
  },
});

// Runs last (tests in a file run in order): stop the shared server.
Deno.test({
  name: "EtcdEventBridge: stop the shared etcd" + tools.note,
  ignore: tools.ignore,
  async fn() {
    await (await shared)?.stop();
  },
});
