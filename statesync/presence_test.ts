import assert from "node:assert/strict";
import { AppError, ManualClock, newId } from "../kernel/mod.ts";
import type { DocEvent } from "./events.ts";
import { PresenceManager } from "./presence.ts";

function setup() {
  const clock = new ManualClock();
  const events: DocEvent[] = [];
  const presence = new PresenceManager({
    clock,
    timers: clock,
    events: { publish: (event) => events.push(event) },
    maxStateBytes: 64,
    maxUsersPerDocument: 2,
  });
  const kinds = () => events.map((e) => `${e.type}:${e.userId}${e.reason ? `:${e.reason}` : ""}`);
  return { clock, events, presence, kinds, documentId: newId() };
}

Deno.test("update() joins the user and broadcasts presence_updated with the state", () => {
  const { presence, events, kinds, documentId, clock } = setup();
  const record = presence.update(documentId, "alice", {
    sessionId: "s1",
    state: { cursor: 3 },
    ttlMs: 1000,
  });
  assert.deepEqual(record, {
    userId: "alice",
    sessionId: "s1",
    state: { cursor: 3 },
    updatedAt: clock.now(),
    expiresAt: clock.now() + 1000,
  });
  presence.update(documentId, "alice", { state: { cursor: 4 } });
  assert.deepEqual(kinds(), [
    "user_joined:alice",
    "presence_updated:alice",
    "presence_updated:alice",
  ]);
  assert.deepEqual(events.at(-1)?.presence?.state, { cursor: 4 });
  assert.deepEqual(presence.list(documentId).map((p) => p.state), [{ cursor: 4 }]);
  assert.deepEqual(presence.activeUsers(documentId), ["alice"]);
  presence.close();
});

Deno.test("presence times out: user_left without a subscription, a cleared presence with one", () => {
  const { presence, kinds, documentId, clock } = setup();
  presence.update(documentId, "alice", { state: 1, ttlMs: 1000 });
  presence.attach(documentId, "bob");
  presence.update(documentId, "bob", { state: 2, ttlMs: 2000 });
  clock.advance(1000);
  assert.deepEqual(presence.activeUsers(documentId), ["bob"]);
  clock.advance(1000);
  assert.deepEqual(presence.activeUsers(documentId), ["bob"]);
  assert.deepEqual(presence.list(documentId), []);
  assert.deepEqual(kinds(), [
    "user_joined:alice",
    "presence_updated:alice",
    "user_joined:bob",
    "presence_updated:bob",
    "user_left:alice:expired",
    "presence_updated:bob:expired",
  ]);
  assert.equal(clock.pending, 0);
  presence.close();
});

Deno.test("the last unsubscribe drops presence with user_left; earlier ones keep it", () => {
  const { presence, kinds, documentId, clock } = setup();
  presence.attach(documentId, "alice");
  presence.attach(documentId, "alice");
  presence.update(documentId, "alice", { state: "x" });
  presence.detach(documentId, "alice");
  assert.equal(presence.list(documentId).length, 1);
  presence.detach(documentId, "alice");
  assert.equal(presence.list(documentId).length, 0);
  assert.deepEqual(presence.activeUsers(documentId), []);
  assert.equal(presence.activeUserCount(), 0);
  assert.deepEqual(kinds(), [
    "user_joined:alice",
    "presence_updated:alice",
    "user_left:alice:unsubscribed",
  ]);
  assert.equal(clock.pending, 0);
  presence.close();
});

Deno.test("leave() clears presence; a user without subscriptions leaves the document", () => {
  const { presence, kinds, documentId } = setup();
  presence.update(documentId, "alice", { state: true });
  assert.equal(presence.leave(documentId, "alice"), true);
  assert.equal(presence.leave(documentId, "alice"), false);
  assert.deepEqual(kinds(), [
    "user_joined:alice",
    "presence_updated:alice",
    "user_left:alice:left",
  ]);
  presence.close();
});

Deno.test("update() refuses oversized state and too many users with RESOURCE_EXHAUSTED", () => {
  const { presence, documentId } = setup();
  assert.throws(
    () => presence.update(documentId, "alice", { state: "x".repeat(100) }),
    (e) =>
      e instanceof AppError && e.status === "RESOURCE_EXHAUSTED" &&
      /over the limit of 64/.test(e.message),
  );
  assert.deepEqual(presence.activeUsers(documentId), []);
  presence.update(documentId, "a", { state: 1 });
  presence.attach(documentId, "b");
  assert.throws(
    () => presence.update(documentId, "c", { state: 1 }),
    (e) => e instanceof AppError && e.status === "RESOURCE_EXHAUSTED",
  );
  assert.throws(() => presence.update(documentId, "a", { state: 1, ttlMs: 700_000 }), RangeError);
  presence.close();
});
