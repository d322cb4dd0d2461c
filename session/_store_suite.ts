/**
 * The one behaviour suite every {@link SessionStore} implementation must pass. Each store's
 * test file calls {@link storeSuite} with a factory.
 * @module
 */
import assert from "node:assert/strict";
import { AppError, newId } from "../kernel/mod.ts";
import { emptyStats, type StoredSession } from "./model.ts";
import type { SessionStore } from "./store.ts";

/** A store under test plus its cleanup. */
export interface StoreFixture extends AsyncDisposable {
  store: SessionStore;
}

const T0 = 1_700_000_000_000;
const MINUTE = 60_000;

/** A fresh stored session for tests. */
export function makeRecord(
  overrides: Partial<StoredSession> & { now?: number } = {},
): StoredSession {
  const now = overrides.now ?? T0;
  const { now: _now, ...rest } = overrides;
  return {
    id: newId(),
    userId: "user-1",
    connectionId: "",
    clientIp: "10.0.0.1",
    clientPort: 4000,
    serverAddress: "gw-1:8080",
    state: "active",
    createdAt: now,
    lastActiveAt: now,
    expiresAt: now + 10 * MINUTE,
    ttlMs: 10 * MINUTE,
    metadata: { device: "laptop" },
    stats: emptyStats(),
    tokenHash: crypto.randomUUID().replaceAll("-", ""),
    rotatedTokenHashes: [],
    ...rest,
  };
}

async function assertAppError(promise: Promise<unknown>, status: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof AppError, `expected AppError, got ${error}`);
    assert.equal(error.status, status);
    return true;
  });
}

const limits = { maxPerUser: 100, onLimit: "refuse" as const };

/** Register the shared store tests for one implementation. */
export function storeSuite(name: string, open: () => Promise<StoreFixture>): void {
  const test = (title: string, fn: (store: SessionStore) => Promise<void>) =>
    Deno.test(`${name}: ${title}`, async () => {
      await using fixture = await open();
      await fn(fixture.store);
    });

  test("insert then read by id, connection id and token hash", async (store) => {
    const record = makeRecord({ connectionId: newId() });
    await store.insert(record, { now: T0, ...limits });
    assert.deepEqual(await store.get(record.id, T0), record);
    assert.deepEqual(await store.getByConnectionId(record.connectionId, T0), record);
    assert.deepEqual(await store.getByTokenHash(record.tokenHash, T0), record);
    assert.equal(await store.get(newId(), T0), null);
    assert.equal(await store.getByConnectionId(newId(), T0), null);
    assert.equal(await store.getByTokenHash("nope", T0), null);
  });

  test("reads return copies that callers cannot alias", async (store) => {
    const record = makeRecord();
    await store.insert(record, { now: T0, ...limits });
    record.metadata.device = "changed";
    const read = (await store.get(record.id, T0))!;
    assert.equal(read.metadata.device, "laptop");
    read.stats.operations = 99;
    assert.equal((await store.get(record.id, T0))!.stats.operations, 0);
  });

  test("an expired session is absent on every read before any sweep", async (store) => {
    const record = makeRecord({ connectionId: newId(), expiresAt: T0 + 1000 });
    await store.insert(record, { now: T0, ...limits });
    const later = T0 + 1000;
    assert.notEqual(await store.get(record.id, later - 1), null);
    assert.equal(await store.get(record.id, later), null);
    assert.equal(await store.getByConnectionId(record.connectionId, later), null);
    assert.equal(await store.getByTokenHash(record.tokenHash, later), null);
    assert.equal(await store.count({}, later), 0);
    assert.deepEqual((await store.list({}, { limit: 10 }, later)).sessions, []);
    await assertAppError(store.update(record.id, later, (s) => s), "NOT_FOUND");
  });

  test("a duplicate id is ALREADY_EXISTS", async (store) => {
    const record = makeRecord();
    await store.insert(record, { now: T0, ...limits });
    await assertAppError(
      store.insert({ ...record, tokenHash: "other" }, { now: T0, ...limits }),
      "ALREADY_EXISTS",
    );
  });

  test("a connection id held by a live session is ALREADY_EXISTS; an expired holder yields", async (store) => {
    const connectionId = newId();
    const first = makeRecord({ connectionId, expiresAt: T0 + 1000 });
    await store.insert(first, { now: T0, ...limits });
    await assertAppError(
      store.insert(makeRecord({ connectionId }), { now: T0, ...limits }),
      "ALREADY_EXISTS",
    );
    const later = T0 + 2000;
    const second = makeRecord({ connectionId, now: later });
    await store.insert(second, { now: later, ...limits });
    assert.equal((await store.getByConnectionId(connectionId, later))?.id, second.id);
    assert.equal(await store.sweep(later), 1);
    assert.equal((await store.getByConnectionId(connectionId, later))?.id, second.id);
  });

  test("update moves connection and token indexes atomically", async (store) => {
    const oldConnection = newId();
    const record = makeRecord({ connectionId: oldConnection });
    await store.insert(record, { now: T0, ...limits });
    const newConnection = newId();
    const updated = await store.update(record.id, T0, (s) => ({
      ...s,
      connectionId: newConnection,
      tokenHash: "new-hash",
      rotatedTokenHashes: [s.tokenHash],
    }));
    assert.equal(updated.connectionId, newConnection);
    assert.equal(await store.getByConnectionId(oldConnection, T0), null);
    assert.equal((await store.getByConnectionId(newConnection, T0))?.id, record.id);
    assert.equal((await store.getByTokenHash("new-hash", T0))?.tokenHash, "new-hash");
    assert.equal((await store.getByTokenHash(record.tokenHash, T0))?.id, record.id);
    const cleared = await store.update(record.id, T0, (s) => ({ ...s, connectionId: "" }));
    assert.equal(cleared.connectionId, "");
    assert.equal(await store.getByConnectionId(newConnection, T0), null);
  });

  test("update refuses a connection id held by another live session", async (store) => {
    const taken = newId();
    await store.insert(makeRecord({ connectionId: taken }), { now: T0, ...limits });
    const other = makeRecord();
    await store.insert(other, { now: T0, ...limits });
    await assertAppError(
      store.update(other.id, T0, (s) => ({ ...s, connectionId: taken })),
      "ALREADY_EXISTS",
    );
    assert.equal((await store.get(other.id, T0))!.connectionId, "");
  });

  test("update of an unknown session is NOT_FOUND and an aborting mutate writes nothing", async (store) => {
    await assertAppError(store.update(newId(), T0, (s) => s), "NOT_FOUND");
    const record = makeRecord();
    await store.insert(record, { now: T0, ...limits });
    await assert.rejects(
      store.update(record.id, T0, () => {
        throw new RangeError("no");
      }),
      RangeError,
    );
    assert.deepEqual(await store.get(record.id, T0), record);
  });

  test("concurrent updates of one session lose no increments", async (store) => {
    const record = makeRecord();
    await store.insert(record, { now: T0, ...limits });
    await Promise.all(Array.from({ length: 20 }, () =>
      store.update(record.id, T0, (s) => ({
        ...s,
        stats: { ...s.stats, operations: s.stats.operations + 1 },
      }))));
    assert.equal((await store.get(record.id, T0))!.stats.operations, 20);
  });

  test("the per-user limit refuses with RESOURCE_EXHAUSTED when asked to", async (store) => {
    const options = { now: T0, maxPerUser: 2, onLimit: "refuse" as const };
    await store.insert(makeRecord(), options);
    await store.insert(makeRecord(), options);
    const third = makeRecord();
    await assertAppError(store.insert(third, options), "RESOURCE_EXHAUSTED");
    assert.equal(await store.get(third.id, T0), null);
    assert.equal(await store.count({ userId: "user-1" }, T0), 2);
    await store.insert(makeRecord({ userId: "user-2" }), options);
  });

  test("the per-user limit evicts the oldest session with its indexes", async (store) => {
    const options = { now: T0, maxPerUser: 2, onLimit: "evict_oldest" as const };
    const first = makeRecord({ connectionId: newId() });
    const second = makeRecord();
    const third = makeRecord();
    await store.insert(first, options);
    await store.insert(second, options);
    assert.deepEqual(await store.insert(third, options), { evicted: [first.id] });
    assert.equal(await store.get(first.id, T0), null);
    assert.equal(await store.getByTokenHash(first.tokenHash, T0), null);
    assert.equal(await store.getByConnectionId(first.connectionId, T0), null);
    const page = await store.list({ userId: "user-1" }, { limit: 10 }, T0);
    assert.deepEqual(page.sessions.map((s) => s.id), [second.id, third.id]);
  });

  test("expired and terminated sessions do not count toward the per-user limit", async (store) => {
    const options = { now: T0, maxPerUser: 1, onLimit: "refuse" as const };
    const short = makeRecord({ expiresAt: T0 + 10 });
    await store.insert(short, options);
    const later = T0 + 20;
    const next = makeRecord({ now: later });
    await store.insert(next, { ...options, now: later });
    await store.update(next.id, later, (s) => ({ ...s, state: "terminated" }));
    await store.insert(makeRecord({ now: later }), { ...options, now: later });
    assert.equal(await store.count({ userId: "user-1" }, later), 1);
    assert.equal(await store.count({ userId: "user-1", state: "terminated" }, later), 1);
  });

  test("concurrent inserts for one user never exceed the limit", async (store) => {
    const options = { now: T0, maxPerUser: 3, onLimit: "refuse" as const };
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () => store.insert(makeRecord(), options)),
    );
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 3);
    assert.equal(await store.count({ userId: "user-1" }, T0), 3);
  });

  test("delete removes the session and its indexes once", async (store) => {
    const record = makeRecord({ connectionId: newId() });
    await store.insert(record, { now: T0, ...limits });
    assert.equal(await store.delete(record.id, T0), true);
    assert.equal(await store.delete(record.id, T0), false);
    assert.equal(await store.get(record.id, T0), null);
    assert.equal(await store.getByConnectionId(record.connectionId, T0), null);
    assert.equal(await store.getByTokenHash(record.tokenHash, T0), null);
    assert.equal(await store.count({ userId: "user-1" }, T0), 0);
    // The connection id and the user's slot are free again.
    await store.insert(makeRecord({ connectionId: record.connectionId }), {
      now: T0,
      maxPerUser: 1,
      onLimit: "refuse",
    });
  });

  test("list filters by user, state and creation time and pages in id order", async (store) => {
    const made: StoredSession[] = [];
    for (let i = 0; i < 12; i++) {
      const record = makeRecord({ userId: i % 3 === 0 ? "alice" : "bob", now: T0 + i * 1000 });
      await store.insert(record, { now: T0 + i * 1000, ...limits });
      made.push(record);
    }
    const now = T0 + 12_000;
    await store.update(made[1]!.id, now, (s) => ({ ...s, state: "idle" }));
    await store.update(made[2]!.id, now, (s) => ({ ...s, state: "terminated" }));

    const all: string[] = [];
    let after: string | undefined;
    do {
      const page = await store.list({}, { after, limit: 5 }, now);
      assert.ok(page.sessions.length <= 5);
      all.push(...page.sessions.map((s) => s.id));
      after = page.nextAfter ?? undefined;
    } while (after !== undefined);
    const live = made.filter((_, i) => i !== 2).map((s) => s.id);
    assert.deepEqual(all, live);
    assert.equal(await store.count({}, now), 11);

    const alice = await store.list({ userId: "alice" }, { limit: 100 }, now);
    assert.deepEqual(alice.sessions.map((s) => s.id), [0, 3, 6, 9].map((i) => made[i]!.id));
    assert.equal(alice.nextAfter, null);
    const idle = await store.list({ state: "idle" }, { limit: 100 }, now);
    assert.deepEqual(idle.sessions.map((s) => s.id), [made[1]!.id]);
    const terminated = await store.list({ state: "terminated" }, { limit: 100 }, now);
    assert.deepEqual(terminated.sessions.map((s) => s.id), [made[2]!.id]);
    const range = await store.list(
      { createdAfter: T0 + 3000, createdBefore: T0 + 6000, userId: "bob" },
      { limit: 100 },
      now,
    );
    assert.deepEqual(range.sessions.map((s) => s.id), [made[4]!.id, made[5]!.id]);
    assert.equal(await store.count({ userId: "bob", createdAfter: T0 + 3000 }, now), 6);
  });

  test("sweep removes only expired sessions, with their indexes, up to the limit", async (store) => {
    const expiring = Array.from(
      { length: 5 },
      (_, i) => makeRecord({ userId: `u${i}`, connectionId: newId(), expiresAt: T0 + 100 + i }),
    );
    for (const record of expiring) await store.insert(record, { now: T0, ...limits });
    const keeper = makeRecord({ expiresAt: T0 + 100 });
    await store.insert(keeper, { now: T0, ...limits });
    // A heartbeat moved this one's expiry: the sweep must not take it.
    await store.update(keeper.id, T0 + 50, (s) => ({ ...s, expiresAt: T0 + 10_000 }));
    const now = T0 + 1000;
    assert.equal(await store.sweep(now, 3), 3);
    assert.equal(await store.sweep(now), 2);
    assert.equal(await store.sweep(now), 0);
    assert.notEqual(await store.get(keeper.id, now), null);
    // Nothing of the swept sessions is left, even for a reader with an older clock.
    for (const record of expiring) {
      assert.equal(await store.get(record.id, T0), null);
      assert.equal(await store.getByConnectionId(record.connectionId, T0), null);
      assert.equal(await store.getByTokenHash(record.tokenHash, T0), null);
    }
    assert.equal(await store.count({}, T0), 1);
  });
}
