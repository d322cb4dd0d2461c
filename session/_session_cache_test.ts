import assert from "node:assert/strict";
import { SessionCache } from "./_session_cache.ts";

Deno.test("SessionCache: keeps the last committed records up to its capacity, as copies", () => {
  const cache = new SessionCache<{ n: number }>(2);
  const first = { n: 1 };
  cache.committed([{ type: "set", key: ["s", "a"], value: first }], "01");
  first.n = 99; // the writer's object is not the cached one
  cache.committed([{ type: "set", key: ["s", "b"], value: { n: 2 } }], "02");
  cache.committed([{ type: "set", key: ["u", "x"], value: ["a"] }], "02"); // not a session
  assert.deepEqual(cache.get("a"), { key: ["s", "a"], value: { n: 1 }, versionstamp: "01" });
  cache.get("a")!.value.n = 5; // nor is a reader's copy
  assert.equal(cache.get("a")!.value.n, 1);
  cache.committed([{ type: "set", key: ["s", "c"], value: { n: 3 } }], "03");
  assert.equal(cache.get("a"), undefined, "the least recently written record is evicted");
  assert.equal(cache.get("b")?.versionstamp, "02");
  cache.committed([{ type: "delete", key: ["s", "b"] }], "04");
  assert.equal(cache.get("b"), undefined);
  cache.failed([{ key: ["s", "c"], versionstamp: "03" }], []);
  assert.equal(cache.get("c"), undefined);
});
