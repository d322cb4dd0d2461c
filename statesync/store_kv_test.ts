import assert from "node:assert/strict";
import { newId } from "../kernel/mod.ts";
import { tempDir } from "../kernel/testing.ts";
import type { OperationRecord } from "./model.ts";
import type { DocumentHead } from "./store.ts";
import { KvDocumentStore } from "./store_kv.ts";
import { storeSuite } from "./store_suite.ts";

storeSuite("KvDocumentStore", async () => {
  const dir = await tempDir("statesync-kv-");
  const path = `${dir.path}/store.kv`;
  const store = await KvDocumentStore.open(path);
  return {
    store,
    reopen: () => KvDocumentStore.open(path),
    async [Symbol.asyncDispose]() {
      await store.close();
      await dir[Symbol.asyncDispose]();
    },
  };
});

Deno.test("KvDocumentStore: reads ops stored one per key (older layout) next to packed ones", async () => {
  await using dir = await tempDir("statesync-kv-");
  const kv = await Deno.openKv(`${dir.path}/store.kv`);
  try {
    const store = new KvDocumentStore(kv);
    const id = newId();
    const head = (version: number): DocumentHead => ({
      id,
      name: "old",
      type: "json",
      state: "active",
      ownerId: "alice",
      permissions: { editors: [], viewers: [], publicRead: false },
      version,
      createdAt: 1,
      updatedAt: 1 + version,
      metadata: {},
      conflictStrategy: "merge",
    });
    const op = (version: number): OperationRecord => ({
      id: newId(),
      documentId: id,
      baseVersion: version - 1,
      version,
      authorId: "alice",
      sessionId: "s1",
      clientOpId: `c${version}`,
      timestamp: 100 + version,
      op: [{ path: ["n"], action: { type: "increment", delta: version } }],
    });
    const commit = (s: KvDocumentStore, from: number, count: number) => {
      const ops = Array.from({ length: count }, (_, i) => op(from + i + 1));
      return s.commit([{
        documentId: id,
        expectedVersion: from,
        head: head(from + count),
        ops,
        dedupe: [],
        conflicts: [],
      }]);
    };
    await store.createDocument(head(0), { n: 0 });
    assert.deepEqual(await commit(store, 0, 3), ["committed"]);
    // Versions 4 and 5 as an older store wrote them: one op object per key.
    const old = [op(4), op(5)];
    const atomic = kv.atomic();
    for (const o of old) {
      const stored = {
        i: o.id,
        b: o.baseVersion,
        a: o.authorId,
        s: o.sessionId,
        c: o.clientOpId,
        t: o.timestamp,
        o: o.op,
      };
      atomic.set(
        ["statesync", "op", id, o.version],
        new TextEncoder().encode(JSON.stringify(stored)),
      );
    }
    atomic.set(["statesync", "ver", id], new TextEncoder().encode(JSON.stringify({ v: 5, u: 6 })));
    await atomic.commit();
    const fresh = new KvDocumentStore(kv);
    assert.deepEqual(await commit(fresh, 5, 2), ["committed"]);
    const versions = async (from: number, to: number, limit?: number) =>
      (await fresh.getOps(id, from, to, limit)).map((o) => o.version);
    assert.deepEqual(await versions(0, 10), [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(await versions(1, 4), [2, 3, 4]);
    assert.deepEqual(await versions(4, 6), [5, 6]);
    assert.deepEqual(await versions(2, 10, 3), [3, 4, 5]);
    assert.deepEqual((await fresh.getOps(id, 3, 4))[0], old[0]);
  } finally {
    kv.close();
  }
});

Deno.test("KvDocumentStore: snapshots requested in one turn are written in one transaction", async () => {
  await using dir = await tempDir("statesync-kv-");
  const kv = await Deno.openKv(`${dir.path}/store.kv`);
  try {
    const store = new KvDocumentStore(kv);
    const ids = Array.from({ length: 20 }, () => newId());
    for (const id of ids) {
      await store.createDocument({
        id,
        name: "snap",
        type: "json",
        state: "active",
        ownerId: "alice",
        permissions: { editors: [], viewers: [], publicRead: false },
        version: 0,
        createdAt: 1,
        updatedAt: 1,
        metadata: {},
        conflictStrategy: "merge",
      }, { n: 0 });
    }
    let transactions = 0;
    const atomic = kv.atomic.bind(kv);
    kv.atomic = () => {
      transactions++;
      return atomic();
    };
    await Promise.all(
      ids.map((id, i) => store.putSnapshot(id, { version: 100, content: { n: i } })),
    );
    assert.equal(transactions, 1);
    for (const [i, id] of ids.entries()) {
      assert.deepEqual(await store.getSnapshot(id, 100), { version: 100, content: { n: i } });
    }
  } finally {
    kv.close();
  }
});
