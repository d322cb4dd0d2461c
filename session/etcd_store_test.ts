import assert from "node:assert/strict";
import { connectEtcd } from "../kernel/etcd.ts";
import { ETCD_BINARY, type EtcdServer, needs, startEtcd } from "../kernel/testing.ts";
import { makeRecord, storeSuite } from "./_store_suite.ts";
import { EtcdSessionStore } from "./etcd_store.ts";

const tools = needs(ETCD_BINARY);

/** One etcd for the whole file (started on first use); each test gets its own prefix. */
let shared: Promise<EtcdServer> | undefined;
function server(): Promise<EtcdServer> {
  shared ??= startEtcd();
  return shared;
}

if (tools.ignore) {
  Deno.test({ name: "EtcdSessionStore: shared store suite" + tools.note, ignore: true, fn() {} });
} else {
  storeSuite("EtcdSessionStore", async () => {
    const etcd = await connectEtcd({
      endpoints: [(await server()).endpoint],
      prefix: `/test/${crypto.randomUUID()}`,
    });
    const store = new EtcdSessionStore(etcd, { ownsConnection: true });
    return { store, [Symbol.asyncDispose]: () => store.close() };
  });
}

Deno.test({
  name: "EtcdSessionStore: a session and its indexes vanish when its lease runs out" + tools.note,
  ignore: tools.ignore,
  async fn() {
    const etcd = await connectEtcd({ endpoints: [(await server()).endpoint], prefix: "/lease" });
    await using store = new EtcdSessionStore(etcd, { ownsConnection: true });
    const now = Date.now();
    // 100 ms left: the lease gets etcd's minimum TTL (2 s) and is not kept alive.
    const record = makeRecord({ now, expiresAt: now + 100, connectionId: crypto.randomUUID() });
    await store.insert(record, { now, maxPerUser: 5, onLimit: "refuse" });
    const keys = () => etcd.client.getAll().prefix(store.prefix + "/").keys();
    assert.equal((await keys()).length, 6); // s, c, t, u, x and the user's insert guard g
    const watcher = await etcd.client.watch().prefix(store.prefix + "/s/").create();
    const deleted = new Promise<void>((resolve) => watcher.on("delete", () => resolve()));
    if ((await keys()).some((k) => k.includes("/s/"))) await deleted;
    await watcher.cancel();
    assert.deepEqual(await keys(), []);
    // Reads with an old clock find nothing either: the data is gone, not just hidden.
    assert.equal(await store.get(record.id, now), null);
    assert.equal(await store.getByTokenHash(record.tokenHash, now), null);
  },
});

Deno.test({
  name: "EtcdSessionStore: a heartbeat moves every key to a lease of the new expiry" + tools.note,
  ignore: tools.ignore,
  async fn() {
    const etcd = await connectEtcd({ endpoints: [(await server()).endpoint], prefix: "/hb" });
    await using store = new EtcdSessionStore(etcd, { ownsConnection: true });
    const now = Date.now();
    const record = makeRecord({ now, expiresAt: now + 100 });
    await store.insert(record, { now, maxPerUser: 5, onLimit: "refuse" });
    const before = (await etcd.client.get(`${store.prefix}/s/${record.id}`).exec()).kvs[0]!.lease;
    await store.update(record.id, now, (s) => ({ ...s, expiresAt: now + 60_000 }));
    const kvs = (await etcd.client.getAll().prefix(store.prefix + "/").exec()).kvs
      .filter((kv) => !kv.key.toString().includes("/g/")); // the user's insert guard stays
    assert.equal(kvs.length, 4); // s, t, u, x
    const leases = new Set(kvs.map((kv) => String(kv.lease)));
    assert.equal(leases.size, 1);
    assert.notEqual([...leases][0], String(before));
    const ttl = await etcd.client.leaseClient.leaseTimeToLive({ ID: [...leases][0]! });
    assert.ok(Number(ttl.TTL) > 55, `lease TTL ${ttl.TTL}`);
  },
});

Deno.test({
  name: "EtcdSessionStore: sessions expiring in the same second share one lease" + tools.note,
  ignore: tools.ignore,
  async fn() {
    const etcd = await connectEtcd({ endpoints: [(await server()).endpoint], prefix: "/share" });
    await using store = new EtcdSessionStore(etcd, { ownsConnection: true });
    const now = Date.now();
    await Promise.all(
      Array.from(
        { length: 20 },
        (_, i) =>
          store.insert(makeRecord({ now, userId: `u${i}`, expiresAt: now + 30_000 }), {
            now,
            maxPerUser: 5,
            onLimit: "refuse",
          }),
      ),
    );
    const kvs = (await etcd.client.getAll().prefix(store.prefix + "/s/").exec()).kvs;
    assert.equal(kvs.length, 20);
    assert.equal(new Set(kvs.map((kv) => String(kv.lease))).size, 1);
  },
});

Deno.test({
  name: "EtcdSessionStore: two store instances share one etcd consistently" + tools.note,
  ignore: tools.ignore,
  async fn() {
    const endpoint = (await server()).endpoint;
    const a = new EtcdSessionStore(await connectEtcd({ endpoints: [endpoint], prefix: "/two" }), {
      ownsConnection: true,
    });
    const b = new EtcdSessionStore(await connectEtcd({ endpoints: [endpoint], prefix: "/two" }), {
      ownsConnection: true,
    });
    try {
      const now = Date.now();
      const options = { now, maxPerUser: 3, onLimit: "refuse" as const };
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).insert(makeRecord({ now }), options)),
      );
      assert.equal(results.filter((r) => r.status === "fulfilled").length, 3);
      assert.equal(await a.count({ userId: "user-1" }, now), 3);
      assert.equal(await b.count({ userId: "user-1" }, now), 3);
    } finally {
      await a.close();
      await b.close();
    }
  },
});

// Runs last (tests in a file run in order): stop the shared server.
Deno.test({
  name: "EtcdSessionStore: stop the shared etcd" + tools.note,
  ignore: tools.ignore,
  async fn() {
    await (await shared)?.stop();
  },
});
