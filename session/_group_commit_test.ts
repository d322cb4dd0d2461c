import assert from "node:assert/strict";
import { tempDir } from "../kernel/testing.ts";
import { GroupCommitter, type KvWrite } from "./_group_commit.ts";

function setWrite(key: Deno.KvKey, value: unknown, checks: Deno.AtomicCheck[] = []): KvWrite {
  return { checks, mutations: [{ type: "set", key, value }], bytes: 64 };
}

Deno.test("GroupCommitter: concurrent writes share commits, all durable once answered", async () => {
  await using dir = await tempDir("aetherflow-group-commit-");
  const kv = await Deno.openKv(`${dir.path}/kv`);
  const committer = new GroupCommitter(kv);
  const stamps = await Promise.all(
    Array.from({ length: 40 }, (_, i) => committer.commit(setWrite(["k", i], i))),
  );
  assert.ok(stamps.every((stamp) => stamp !== null));
  const { commits, writes } = committer.stats();
  assert.equal(writes, 40);
  assert.ok(commits < 40, `expected shared commits, got ${commits}`);
  // Two commits may be in flight: the callers are split between them.
  assert.ok(commits >= 2, `expected the queue split over both slots, got ${commits}`);
  // Reopen the file: what the callers were told is committed must be on disk.
  kv.close();
  using reopened = await Deno.openKv(`${dir.path}/kv`);
  const values = [];
  for await (const entry of reopened.list<number>({ prefix: ["k"] })) values.push(entry.value);
  assert.deepEqual(values, Array.from({ length: 40 }, (_, i) => i));
});

Deno.test("GroupCommitter: writes to one key commit in order, never in the same or parallel batch", async () => {
  await using dir = await tempDir("aetherflow-group-commit-");
  using kv = await Deno.openKv(`${dir.path}/kv`);
  const committer = new GroupCommitter(kv);
  const stamps = await Promise.all(
    Array.from({ length: 6 }, (_, i) => committer.commit(setWrite(["same"], i))),
  );
  assert.equal((await kv.get(["same"])).value, 5);
  const sorted = [...stamps].sort();
  assert.deepEqual(stamps, sorted);
  assert.equal(new Set(stamps).size, 6);
});

Deno.test("GroupCommitter: a failed check fails only its own write", async () => {
  await using dir = await tempDir("aetherflow-group-commit-");
  using kv = await Deno.openKv(`${dir.path}/kv`);
  await kv.set(["taken"], "x");
  const committer = new GroupCommitter(kv);
  const results = await Promise.all([
    committer.commit(setWrite(["a"], 1)),
    committer.commit(setWrite(["taken"], "y", [{ key: ["taken"], versionstamp: null }])),
    committer.commit(setWrite(["b"], 2)),
  ]);
  assert.notEqual(results[0], null);
  assert.equal(results[1], null);
  assert.notEqual(results[2], null);
  assert.equal((await kv.get(["taken"])).value, "x");
  await committer.drain();
});

Deno.test("GroupCommitter: a write KV cannot even build fails its callers instead of hanging", async () => {
  await using dir = await tempDir("aetherflow-group-commit-");
  using kv = await Deno.openKv(`${dir.path}/kv`);
  const committer = new GroupCommitter(kv);
  // Queued together: the first two share a batch, the third takes the other slot.
  const mate = committer.commit(setWrite(["mate"], 1));
  const bad = committer.commit(setWrite(["bad"], () => 1)); // functions cannot be serialised
  const other = committer.commit(setWrite(["other"], 2));
  await assert.rejects(bad, TypeError);
  await assert.rejects(mate, TypeError); // failed with its batch, never left pending
  assert.notEqual(await other, null);
  assert.notEqual(await committer.commit(setWrite(["later"], 3)), null);
  await committer.drain();
});
