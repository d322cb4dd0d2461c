import assert from "node:assert/strict";
import { makeRecord } from "./_store_suite.ts";
import { SessionCache } from "./_session_cache.ts";

Deno.test("SessionCache: keeps the last committed records up to its capacity, as copies", () => {
  const cache = new SessionCache(2);
  const [a, b, c] = [makeRecord(), makeRecord(), makeRecord()];
  const original = structuredClone(a);
  cache.committed([{ type: "set", key: ["s", a.id], value: a }], "01");
  a.metadata.device = "changed by the writer"; // the writer's object is not the cached one
  cache.committed([{ type: "set", key: ["s", b.id], value: b }], "02");
  cache.committed([{ type: "set", key: ["u", a.userId], value: [a.id] }], "02"); // not a session
  assert.deepEqual(cache.get(a.id), { key: ["s", a.id], value: original, versionstamp: "01" });
  cache.get(a.id)!.value.rotatedTokenHashes.push("x"); // nor is a reader's copy
  assert.deepEqual(cache.get(a.id)!.value, original);
  cache.committed([{ type: "set", key: ["s", c.id], value: c }], "03");
  assert.equal(cache.get(a.id), undefined, "the least recently written record is evicted");
  assert.equal(cache.get(b.id)?.versionstamp, "02");
  cache.committed([{ type: "delete", key: ["s", b.id] }], "04");
  assert.equal(cache.get(b.id), undefined);
  cache.failed([{ key: ["s", c.id], versionstamp: "03" }], []);
  assert.equal(cache.get(c.id), undefined);
});
