import assert from "node:assert/strict";
import { AppError } from "../kernel/mod.ts";
import { tempDir } from "../kernel/testing.ts";
import { makeRecord, storeSuite } from "./_store_suite.ts";
import { KvSessionStore } from "./kv_store.ts";

storeSuite("KvSessionStore", async () => {
  const dir = await tempDir("aetherflow-session-");
  const store = await KvSessionStore.open(`${dir.path}/session.kv`);
  return {
    store,
    async [Symbol.asyncDispose]() {
      await store.close();
      await dir[Symbol.asyncDispose]();
    },
  };
});

Deno.test("KvSessionStore: sessions survive closing and reopening the file", async () => {
  await using dir = await tempDir("aetherflow-session-");
  const path = `${dir.path}/session.kv`;
  const record = makeRecord();
  const now = record.createdAt;
  {
    await using store = await KvSessionStore.open(path);
    await store.insert(record, { now, maxPerUser: 10, onLimit: "refuse" });
  }
  await using store = await KvSessionStore.open(path);
  assert.deepEqual(await store.get(record.id, now), record);
  assert.equal((await store.getByTokenHash(record.tokenHash, now))?.id, record.id);
});

Deno.test("KvSessionStore: concurrent inserts share group commits and all land", async () => {
  await using dir = await tempDir("aetherflow-session-");
  await using store = await KvSessionStore.open(`${dir.path}/session.kv`);
  const records = Array.from({ length: 200 }, (_, i) => makeRecord({ userId: `user-${i}` }));
  const now = records[0]!.createdAt;
  await Promise.all(
    records.map((record) => store.insert(record, { now, maxPerUser: 5, onLimit: "refuse" })),
  );
  assert.equal(await store.count({}, now), 200);
  for (const record of records.slice(0, 20)) {
    assert.equal((await store.get(record.id, now))?.userId, record.userId);
  }
});

Deno.test("KvSessionStore: the user lists loaded at open spare creates a failed first commit", async () => {
  await using dir = await tempDir("aetherflow-session-");
  const path = `${dir.path}/session.kv`;
  const first = makeRecord({ userId: "u-reopen" });
  const now = first.createdAt;
  {
    await using store = await KvSessionStore.open(path);
    await store.insert(first, { now, maxPerUser: 2, onLimit: "refuse" });
  }
  await using store = await KvSessionStore.open(path);
  await store.insert(makeRecord({ userId: "u-reopen" }), { now, maxPerUser: 2, onLimit: "refuse" });
  assert.deepEqual(store.stats(), { commits: 1, writes: 1 });
  await assert.rejects(
    store.insert(makeRecord({ userId: "u-reopen" }), { now, maxPerUser: 2, onLimit: "refuse" }),
    (error: unknown) => error instanceof AppError && error.status === "RESOURCE_EXHAUSTED",
  );
});

Deno.test("KvSessionStore: a user list changed behind the store's back still bounds the user", async () => {
  await using dir = await tempDir("aetherflow-session-");
  const path = `${dir.path}/session.kv`;
  const now = makeRecord().createdAt;
  const limit = { now, maxPerUser: 2, onLimit: "refuse" } as const;
  await using store = await KvSessionStore.open(path);
  {
    // A second handle on the same file: the first store's in-memory copy goes stale.
    await using other = await KvSessionStore.open(path);
    await other.insert(makeRecord({ userId: "u-shared" }), limit);
    await other.insert(makeRecord({ userId: "u-shared" }), limit);
  }
  await assert.rejects(
    store.insert(makeRecord({ userId: "u-shared" }), limit),
    (error: unknown) => error instanceof AppError && error.status === "RESOURCE_EXHAUSTED",
  );
  const evicting = { ...limit, onLimit: "evict_oldest" } as const;
  const { evicted } = await store.insert(makeRecord({ userId: "u-shared" }), evicting);
  assert.equal(evicted.length, 1);
  assert.equal(await store.count({ userId: "u-shared" }, now), 2);
});

Deno.test("KvSessionStore: an update sees a record changed behind the store's back (cached copy dropped)", async () => {
  await using dir = await tempDir("aetherflow-session-");
  const path = `${dir.path}/session.kv`;
  const record = makeRecord({ userId: "u-cache" });
  const now = record.createdAt;
  await using store = await KvSessionStore.open(path);
  await store.insert(record, { now, maxPerUser: 10, onLimit: "refuse" });
  {
    // A second handle on the same file changes the record this store has cached.
    await using other = await KvSessionStore.open(path);
    await other.update(record.id, now, (s) => ({ ...s, metadata: { from: "other" } }));
  }
  const next = await store.update(record.id, now, (s) => ({ ...s, state: "idle" }));
  assert.deepEqual(next.metadata, { from: "other" });
  assert.equal(next.state, "idle");
  assert.deepEqual(await store.get(record.id, now), next);
});
