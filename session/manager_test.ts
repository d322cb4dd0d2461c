import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { AppError, ManualClock, newId } from "../kernel/mod.ts";
import { tempDir } from "../kernel/testing.ts";
import { KvSessionStore } from "./kv_store.ts";
import { hashToken, SessionManager, type SessionManagerOptions } from "./manager.ts";
import { MemorySessionStore } from "./memory_store.ts";
import { startSweeper } from "./sweeper.ts";

const T0 = 1_700_000_000_000;

function setup(options: SessionManagerOptions = {}) {
  const clock = new ManualClock(T0);
  const store = new MemorySessionStore();
  const manager = new SessionManager(store, { clock, ...options });
  return { clock, store, manager };
}

async function rejectsWith(promise: Promise<unknown>, status: string, pattern?: RegExp) {
  await assert.rejects(promise, (error: unknown) => {
    const appError = AppError.from(error);
    assert.equal(appError.status, status, `${appError.message}`);
    if (pattern) assert.match(appError.message, pattern);
    return true;
  });
}

Deno.test("create() issues a 32-byte base64url token and stores only its SHA-256", async () => {
  const { manager, store } = setup();
  const { session, token } = await manager.create({ userId: "u1", clientIp: "192.0.2.7" });
  assert.match(token, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(Buffer.from(token, "base64url").length, 32);
  const stored = await store.get(session.id, T0);
  assert.equal(stored!.tokenHash, hashToken(token));
  assert.ok(!JSON.stringify(stored).includes(token));
  assert.equal(session.state, "active");
  assert.equal(session.expiresAt, T0 + 1800 * 1000);
  assert.deepEqual(await manager.getByToken(token), session);
  const second = await manager.create({ userId: "u1" });
  assert.notEqual(second.token, token);
});

Deno.test("a session expires exactly at its TTL on every read, before any sweep", async () => {
  const { manager, clock } = setup();
  const { session, token } = await manager.create({
    userId: "u1",
    ttlSeconds: 60,
    connectionId: newId(),
  });
  clock.advance(59_999);
  assert.equal((await manager.get(session.id)).id, session.id);
  clock.advance(1);
  await rejectsWith(manager.get(session.id), "NOT_FOUND");
  await rejectsWith(manager.getByToken(token), "NOT_FOUND");
  await rejectsWith(manager.getByConnectionId(session.connectionId), "NOT_FOUND");
  await rejectsWith(manager.heartbeat(session.id), "NOT_FOUND");
  await rejectsWith(manager.update(session.id, { state: "idle" }), "NOT_FOUND");
  assert.equal(await manager.count(), 0);
  assert.equal(await manager.sweep(), 1);
});

Deno.test("heartbeat() extends the expiry by the session TTL or a new one", async () => {
  const { manager, clock } = setup();
  const { session } = await manager.create({ userId: "u1", ttlSeconds: 60 });
  clock.advance(50_000);
  const beat = await manager.heartbeat(session.id);
  assert.equal(beat.expiresAt, T0 + 110_000);
  assert.equal(beat.lastActiveAt, T0 + 50_000);
  clock.advance(50_000); // 100 s after creation: alive only thanks to the heartbeat
  const longer = await manager.heartbeat(session.id, { ttlSeconds: 120 });
  assert.equal(longer.expiresAt, T0 + 100_000 + 120_000);
  assert.equal(longer.ttlMs, 120_000);
  clock.advance(119_999);
  assert.equal((await manager.heartbeat(session.id)).expiresAt, T0 + 219_999 + 120_000);
});

Deno.test("heartbeat() refuses terminated sessions and bad TTLs", async () => {
  const { manager } = setup({ maxTtlSeconds: 3600 });
  const { session, token } = await manager.create({ userId: "u1" });
  await rejectsWith(
    manager.heartbeat(session.id, { ttlSeconds: 3601 }),
    "INVALID_ARGUMENT",
    /ttl_seconds/,
  );
  await rejectsWith(
    manager.heartbeat(session.id, { ttlSeconds: -5 }),
    "INVALID_ARGUMENT",
    /ttl_seconds/,
  );
  await rejectsWith(
    manager.heartbeat(session.id, { ttlSeconds: 1.5 }),
    "INVALID_ARGUMENT",
    /ttl_seconds/,
  );
  await rejectsWith(manager.heartbeat("not-an-id"), "INVALID_ARGUMENT", /session_id/);
  await rejectsWith(manager.heartbeat(newId()), "NOT_FOUND");
  const { token: next } = await manager.rotateToken(token);
  await rejectsWith(manager.rotateToken(token), "UNAUTHENTICATED"); // reuse terminates
  await rejectsWith(manager.heartbeat(session.id), "FAILED_PRECONDITION");
  await rejectsWith(manager.getByToken(next), "FAILED_PRECONDITION");
  assert.equal((await manager.get(session.id)).state, "terminated");
});

Deno.test("create() rejects TTLs above the maximum and bad fields by name", async () => {
  const { manager } = setup({ maxTtlSeconds: 3600 });
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ userId: "" }, /user_id/],
    [{ userId: "u", ttlSeconds: 3601 }, /ttl_seconds/],
    [{ userId: "u", connectionId: "abc" }, /connection_id/],
    [{ userId: "u", clientIp: "999.1.1.1" }, /client_ip/],
    [{ userId: "u", clientPort: 70_000 }, /client_port/],
    [{ userId: "u", serverAddress: "x".repeat(300) }, /server_address/],
    [{ userId: "u\u0000" }, /user_id/],
  ];
  for (const [input, pattern] of cases) {
    await rejectsWith(
      manager.create(input as unknown as Parameters<typeof manager.create>[0]),
      "INVALID_ARGUMENT",
      pattern,
    );
  }
  assert.equal(await manager.count(), 0);
});

Deno.test("create() enforces metadata limits", async () => {
  const { manager } = setup({
    metadataLimits: { maxEntries: 3, maxKeyBytes: 8, maxValueBytes: 16, maxTotalBytes: 40 },
  });
  const cases: [Record<string, string>, RegExp][] = [
    [{ a: "1", b: "2", c: "3", d: "4" }, /more than 3 entries/],
    [{ "long-key-9": "v" }, /key longer than 8 bytes/],
    [{ k: "x".repeat(17) }, /longer than 16 bytes/],
    [{ k1: "é".repeat(8), k2: "x".repeat(16), k3: "yyy" }, /larger than 40 bytes/],
  ];
  for (const [metadata, pattern] of cases) {
    await rejectsWith(manager.create({ userId: "u", metadata }), "INVALID_ARGUMENT", pattern);
  }
  const ok = await manager.create({ userId: "u", metadata: { k: "x".repeat(16) } });
  assert.deepEqual(ok.session.metadata, { k: "x".repeat(16) });
});

Deno.test("the per-user limit evicts the oldest session by default", async () => {
  const { manager, clock } = setup({ maxSessionsPerUser: 2 });
  const first = await manager.create({ userId: "u1" });
  clock.advance(1);
  const second = await manager.create({ userId: "u1" });
  clock.advance(1);
  const third = await manager.create({ userId: "u1" });
  await manager.create({ userId: "u2" });
  await rejectsWith(manager.get(first.session.id), "NOT_FOUND");
  await rejectsWith(manager.getByToken(first.token), "NOT_FOUND");
  const ids = (await manager.listByUser("u1")).map((s) => s.id);
  assert.deepEqual(ids, [second.session.id, third.session.id]);
});

Deno.test("the per-user limit refuses with RESOURCE_EXHAUSTED under the refuse policy", async () => {
  const { manager, clock } = setup({ maxSessionsPerUser: 2, userLimitPolicy: "refuse" });
  const first = await manager.create({ userId: "u1", ttlSeconds: 10 });
  await manager.create({ userId: "u1", ttlSeconds: 100 });
  await rejectsWith(manager.create({ userId: "u1" }), "RESOURCE_EXHAUSTED", /limit 2/);
  await manager.delete((await manager.listByUser("u1"))[1]!.id);
  await manager.create({ userId: "u1" }); // a deleted session frees its slot
  await rejectsWith(manager.create({ userId: "u1" }), "RESOURCE_EXHAUSTED");
  clock.advance(10_000); // the first one expired: its slot is free too
  await rejectsWith(manager.get(first.session.id), "NOT_FOUND");
  await manager.create({ userId: "u1" });
  assert.equal((await manager.listByUser("u1")).length, 2);
});

Deno.test("update() changes only the given fields and keeps the expiry", async () => {
  const { manager, clock } = setup();
  const { session } = await manager.create({ userId: "u1", metadata: { a: "1" } });
  clock.advance(5000);
  const connectionId = newId();
  const idle = await manager.update(session.id, { state: "idle", connectionId });
  assert.equal(idle.state, "idle");
  assert.equal(idle.connectionId, connectionId);
  assert.deepEqual(idle.metadata, { a: "1" });
  assert.equal(idle.lastActiveAt, T0 + 5000);
  assert.equal(idle.expiresAt, session.expiresAt);
  assert.equal((await manager.getByConnectionId(connectionId.toUpperCase())).id, session.id);
  const stats = { messagesIn: 3, messagesOut: 4, bytesIn: 5, bytesOut: 6, operations: 7 };
  const counted = await manager.update(session.id, { stats, metadata: { b: "2" } });
  assert.deepEqual(counted.stats, stats);
  assert.deepEqual(counted.metadata, { b: "2" });
  assert.equal(counted.state, "idle");
  assert.equal((await manager.update(session.id, { state: "active" })).state, "active");
  await rejectsWith(
    manager.update(session.id, { state: "terminated" }),
    "INVALID_ARGUMENT",
    /state/,
  );
  await rejectsWith(
    manager.update(session.id, { stats: { ...stats, bytesIn: -1 } }),
    "INVALID_ARGUMENT",
    /stats\.bytes_in/,
  );
  await rejectsWith(manager.update(newId(), { state: "idle" }), "NOT_FOUND");
});

Deno.test("rotateToken() replaces the token and a reused one terminates the session", async () => {
  const { manager } = setup();
  const { session, token: t1 } = await manager.create({ userId: "u1" });
  const { token: t2, session: rotated } = await manager.rotateToken(t1);
  assert.notEqual(t2, t1);
  assert.equal(rotated.id, session.id);
  assert.equal((await manager.getByToken(t2)).id, session.id);
  await rejectsWith(manager.getByToken(t1), "NOT_FOUND"); // only the current token matches
  const { token: t3 } = await manager.rotateToken(t2);
  await rejectsWith(manager.rotateToken(t1), "UNAUTHENTICATED", /reuse/);
  assert.equal((await manager.get(session.id)).state, "terminated");
  await rejectsWith(manager.rotateToken(t3), "FAILED_PRECONDITION");
  await rejectsWith(manager.rotateToken(t2), "UNAUTHENTICATED");
  await rejectsWith(manager.rotateToken("A".repeat(43)), "NOT_FOUND");
  await rejectsWith(manager.rotateToken("short"), "INVALID_ARGUMENT", /token/);
  // A terminated session no longer counts toward its user's sessions.
  assert.deepEqual(await manager.listByUser("u1"), []);
});

Deno.test("rotateToken() racing on one token lets exactly one win and terminates the family", async () => {
  await using dir = await tempDir("aetherflow-session-");
  await using store = await KvSessionStore.open(`${dir.path}/s.kv`);
  const manager = new SessionManager(store, { clock: new ManualClock(T0) });
  const { session, token } = await manager.create({ userId: "u1" });
  const results = await Promise.allSettled([
    manager.rotateToken(token),
    manager.rotateToken(token),
  ]);
  const statuses = results.map((r) =>
    r.status === "fulfilled" ? "OK" : AppError.from(r.reason).status
  )
    .sort();
  assert.deepEqual(statuses, ["OK", "UNAUTHENTICATED"]);
  assert.equal((await manager.get(session.id)).state, "terminated");
});

Deno.test("list() pages stay stable while sessions are inserted concurrently", async () => {
  await using dir = await tempDir("aetherflow-session-");
  await using store = await KvSessionStore.open(`${dir.path}/s.kv`);
  const manager = new SessionManager(store, {
    clock: new ManualClock(T0),
    maxSessionsPerUser: 1000,
  });
  const before: string[] = [];
  for (let i = 0; i < 40; i++) {
    before.push((await manager.create({ userId: `u${i % 4}` })).session.id);
  }
  const seen: string[] = [];
  const inserted: string[] = [];
  const totals: number[] = [];
  let pageToken = "";
  do {
    const [page] = await Promise.all([
      manager.list({}, { pageSize: 7, pageToken }),
      ...Array.from({ length: 3 }, async () => {
        inserted.push((await manager.create({ userId: "late" })).session.id);
      }),
    ]);
    assert.ok(page.sessions.length <= 7);
    totals.push(page.totalCount);
    seen.push(...page.sessions.map((s) => s.id));
    pageToken = page.nextPageToken;
  } while (pageToken !== "" && seen.length < 1000);
  assert.equal(new Set(seen).size, seen.length, "no session appears twice");
  assert.deepEqual(seen, [...seen].sort(), "pages come in id order");
  for (const id of before) assert.ok(seen.includes(id), "no existing session is skipped");
  assert.ok(seen.every((id) => before.includes(id) || inserted.includes(id)));
  // The total is counted for the first page and carried along by the cursor.
  assert.ok(totals[0]! >= 40 && totals[0]! <= 43, `first total ${totals[0]}`);
  assert.ok(totals.every((total) => total === totals[0]));
  assert.equal(await manager.count(), 40 + inserted.length);
  const filtered = await manager.list({ userId: "u1" }, { pageSize: 4 });
  assert.equal(filtered.totalCount, 10);
  assert.equal(filtered.sessions.length, 4);
  await rejectsWith(manager.list({}, { pageToken: "garbage" }), "INVALID_ARGUMENT", /page_token/);
  await rejectsWith(manager.list({}, { pageSize: 1001 }), "INVALID_ARGUMENT", /page_size/);
});

Deno.test("delete() removes a session once", async () => {
  const { manager } = setup();
  const { session, token } = await manager.create({ userId: "u1" });
  await manager.delete(session.id);
  await rejectsWith(manager.delete(session.id), "NOT_FOUND");
  await rejectsWith(manager.getByToken(token), "NOT_FOUND");
});

Deno.test("the sweeper deletes expired sessions in the background", async () => {
  const { manager, clock, store } = setup();
  await manager.create({ userId: "u1", ttlSeconds: 10 });
  const keep = await manager.create({ userId: "u1", ttlSeconds: 100 });
  clock.advance(10_000);
  const { promise, resolve } = Promise.withResolvers<number>();
  await using _sweeper = startSweeper(manager, {
    intervalMs: 1,
    onSweep: (removed) => removed > 0 && resolve(removed),
  });
  assert.equal(await promise, 1);
  assert.equal(await store.count({}, T0), 1);
  assert.equal((await manager.get(keep.session.id)).id, keep.session.id);
});
