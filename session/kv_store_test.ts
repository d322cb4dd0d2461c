import assert from "node:assert/strict";
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
