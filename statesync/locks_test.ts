import assert from "node:assert/strict";
import { AppError, ManualClock, newId } from "../kernel/mod.ts";
import type { DocEvent } from "./events.ts";
import { LockManager } from "./locks.ts";

function setup(options: { defaultTtlMs?: number } = {}) {
  const clock = new ManualClock();
  const events: DocEvent[] = [];
  const locks = new LockManager({
    clock,
    timers: clock,
    events: { publish: (event) => events.push(event) },
    versionOf: () => 7,
    ...options,
  });
  return { clock, events, locks, documentId: newId() };
}

function assertStatus(error: unknown, status: string, pattern?: RegExp): true {
  assert.ok(error instanceof AppError, `expected AppError, got ${error}`);
  assert.equal(error.status, status);
  if (pattern) assert.match(error.message, pattern);
  return true;
}

Deno.test("acquire() grants a lock with increasing fencing tokens and a lock_acquired event", async () => {
  const { locks, events, documentId, clock } = setup();
  const a = await locks.acquire("alice", { documentId, path: ["title"], ttlMs: 1000 });
  const b = await locks.acquire("bob", { documentId, path: ["body"], sessionId: "s1" });
  assert.equal(a.acquiredAt, clock.now());
  assert.equal(a.expiresAt, clock.now() + 1000);
  assert.equal(b.expiresAt, clock.now() + 30_000);
  assert.ok(b.fencingToken > a.fencingToken);
  assert.deepEqual(events.map((e) => [e.type, e.userId, e.version]), [
    ["lock_acquired", "alice", 7],
    ["lock_acquired", "bob", 7],
  ]);
  assert.equal(events[1]?.lock?.id, b.id);
  assert.equal(locks.count(), 2);
  locks.close();
});

Deno.test("acquire() refuses an overlapping path held by another user, naming the holder", async () => {
  const { locks, documentId } = setup();
  await locks.acquire("alice", { documentId, path: ["cards", 2] });
  await assert.rejects(
    locks.acquire("bob", { documentId, path: ["cards"] }),
    (e) => assertStatus(e, "FAILED_PRECONDITION", /locked by alice/),
  );
  await assert.rejects(
    locks.acquire("bob", { documentId, path: [] }),
    (e) => assertStatus(e, "FAILED_PRECONDITION", /locked by alice/),
  );
  await assert.rejects(
    locks.acquire("bob", { documentId, path: ["cards", 2, "title"] }),
    (e) => assertStatus(e, "FAILED_PRECONDITION", /alice/),
  );
  // Disjoint paths and the holder's own overlapping locks are fine.
  await locks.acquire("bob", { documentId, path: ["cards", 3] });
  await locks.acquire("alice", { documentId, path: ["cards", 2, "title"] });
  assert.equal(locks.list(documentId).length, 3);
  locks.close();
});

Deno.test("assertCanWrite() throws FAILED_PRECONDITION for others on a locked path until expiry", async () => {
  const { locks, documentId, clock } = setup();
  const lock = await locks.acquire("alice", { documentId, path: ["title"], ttlMs: 500 });
  assert.throws(
    () => locks.assertCanWrite(documentId, "bob", [["body"], ["title", "text"]], clock.now()),
    (e) =>
      assertStatus(
        e,
        "FAILED_PRECONDITION",
        new RegExp(`/title/text is locked by alice.*${lock.id}`),
      ),
  );
  assert.throws(
    () => locks.assertCanWrite(documentId, "bob", [[]], clock.now()),
    (e) => assertStatus(e, "FAILED_PRECONDITION", /locked by alice/),
  );
  locks.assertCanWrite(documentId, "alice", [["title"]], clock.now());
  locks.assertCanWrite(documentId, "bob", [["body"]], clock.now());
  locks.assertCanWrite(newId(), "bob", [[]], clock.now());
  locks.assertCanWrite(documentId, "bob", [["title"]], clock.now() + 500);
  locks.close();
});

Deno.test("a lock expires after its TTL with a lock_released event", async () => {
  const { locks, documentId, clock, events } = setup();
  const lock = await locks.acquire("alice", { documentId, ttlMs: 1000 });
  clock.advance(999);
  assert.equal(locks.isLocked(documentId, ["x"])?.id, lock.id);
  clock.advance(1);
  assert.equal(locks.isLocked(documentId, ["x"]), undefined);
  assert.equal(locks.count(), 0);
  const released = events.at(-1);
  assert.equal(released?.type, "lock_released");
  assert.equal(released?.reason, "expired");
  assert.equal(released?.lock?.id, lock.id);
  assert.equal(clock.pending, 0);
  await locks.acquire("bob", { documentId });
  locks.close();
});

Deno.test("renewing extends the TTL, keeps the fencing token, and is owner-only", async () => {
  const { locks, documentId, clock } = setup();
  const lock = await locks.acquire("alice", { documentId, path: ["a"], ttlMs: 1000 });
  clock.advance(800);
  const renewed = await locks.acquire("alice", { documentId, lockId: lock.id, ttlMs: 1000 });
  assert.equal(renewed.id, lock.id);
  assert.equal(renewed.fencingToken, lock.fencingToken);
  assert.equal(renewed.expiresAt, clock.now() + 1000);
  clock.advance(800); // past the original expiry
  assert.equal(locks.isLocked(documentId, ["a"])?.id, lock.id);
  await assert.rejects(
    locks.acquire("bob", { documentId, lockId: lock.id }),
    (e) => assertStatus(e, "PERMISSION_DENIED", /held by alice/),
  );
  await assert.rejects(
    locks.acquire("alice", { documentId, lockId: newId() }),
    (e) => assertStatus(e, "NOT_FOUND"),
  );
  clock.advance(200);
  await assert.rejects(
    locks.acquire("alice", { documentId, lockId: lock.id }),
    (e) => assertStatus(e, "NOT_FOUND", /expired/),
  );
  locks.close();
});

Deno.test("release() is owner-only and publishes lock_released", async () => {
  const { locks, documentId, events } = setup();
  const lock = await locks.acquire("alice", { documentId });
  assert.throws(
    () => locks.release("bob", documentId, lock.id),
    (e) => assertStatus(e, "PERMISSION_DENIED", /only its owner/),
  );
  assert.equal(locks.release("alice", documentId, lock.id).id, lock.id);
  assert.equal(events.at(-1)?.type, "lock_released");
  assert.equal(events.at(-1)?.reason, "released");
  assert.throws(
    () => locks.release("alice", documentId, lock.id),
    (e) => assertStatus(e, "NOT_FOUND"),
  );
  assert.equal(locks.isLocked(documentId), undefined);
  locks.close();
});

Deno.test("waiters are served in arrival order when the lock is released or expires", async () => {
  const { locks, documentId, clock } = setup();
  const first = await locks.acquire("alice", { documentId, ttlMs: 1000 });
  const order: string[] = [];
  const bob = locks.acquire("bob", { documentId, waitMs: 5000, ttlMs: 1000 })
    .then((lock) => (order.push("bob"), lock));
  const carol = locks.acquire("carol", { documentId, path: ["x"], waitMs: 5000 })
    .then((lock) => (order.push("carol"), lock));
  // A newcomer does not overtake a waiter on an overlapping path.
  await assert.rejects(
    locks.acquire("dave", { documentId, path: ["x"] }),
    (e) => assertStatus(e, "FAILED_PRECONDITION"),
  );
  locks.release("alice", documentId, first.id);
  const bobLock = await bob;
  assert.deepEqual(order, ["bob"]);
  assert.ok(bobLock.fencingToken > first.fencingToken);
  clock.advance(1000); // bob's lock expires; carol gets hers
  const carolLock = await carol;
  assert.deepEqual(order, ["bob", "carol"]);
  assert.deepEqual(carolLock.path, ["x"]);
  assert.ok(carolLock.fencingToken > bobLock.fencingToken);
  locks.close();
});

Deno.test("a waiter gives up after wait_ms with FAILED_PRECONDITION naming the holder", async () => {
  const { locks, documentId, clock } = setup();
  await locks.acquire("alice", { documentId, ttlMs: 10_000 });
  const waiting = locks.acquire("bob", { documentId, waitMs: 100 });
  clock.advance(100);
  await assert.rejects(
    waiting,
    (e) => assertStatus(e, "FAILED_PRECONDITION", /locked by alice.*after waiting 100 ms/),
  );
  locks.close();
});

Deno.test("acquire() rejects TTL and wait out of range with RangeError", async () => {
  const { locks, documentId } = setup();
  await assert.rejects(locks.acquire("a", { documentId, ttlMs: 3_600_001 }), RangeError);
  await assert.rejects(locks.acquire("a", { documentId, ttlMs: -5 }), RangeError);
  await assert.rejects(locks.acquire("a", { documentId, waitMs: 1.5 }), RangeError);
  locks.close();
});

Deno.test("close() fails pending waiters with UNAVAILABLE and clears timers", async () => {
  const { locks, documentId, clock } = setup();
  await locks.acquire("alice", { documentId });
  const waiting = locks.acquire("bob", { documentId, waitMs: 1000 });
  locks.close();
  await assert.rejects(waiting, (e) => assertStatus(e, "UNAVAILABLE"));
  assert.equal(clock.pending, 0);
});

Deno.test("an aborted wait is dropped with CANCELLED and never granted", async () => {
  const { locks, documentId, clock, events } = setup();
  const held = await locks.acquire("alice", { documentId, ttlMs: 10_000 });
  const abort = new AbortController();
  const waiting = locks.acquire("bob", { documentId, waitMs: 5000, signal: abort.signal });
  const carol = locks.acquire("carol", { documentId, waitMs: 5000 });
  abort.abort();
  await assert.rejects(waiting, (e) => assertStatus(e, "CANCELLED"));
  locks.release("alice", documentId, held.id);
  assert.equal((await carol).ownerId, "carol");
  assert.deepEqual(events.filter((e) => e.type === "lock_acquired").map((e) => e.userId), [
    "alice",
    "carol",
  ]);
  assert.equal(clock.pending, 1); // carol's lock expiry
  locks.close();
});
