import assert from "node:assert/strict";
import { AppError, newId } from "../kernel/mod.ts";
import { connectEtcd, type EtcdConnection } from "../kernel/etcd.ts";
import { ETCD_BINARY, type EtcdServer, needs, startEtcd } from "../kernel/testing.ts";
import type { DocEvent } from "./events.ts";
import { EtcdLockManager } from "./lock_etcd.ts";

const tools = needs(ETCD_BINARY);

let shared: Promise<EtcdServer> | undefined;
function server(): Promise<EtcdServer> {
  shared ??= startEtcd();
  return shared;
}

/** A lock manager on its own connection (an "instance"), with the events it published. */
interface Instance extends AsyncDisposable {
  locks: EtcdLockManager;
  etcd: EtcdConnection;
  events: DocEvent[];
  /** Resolves with the next published event matching `predicate`. */
  next(predicate: (event: DocEvent) => boolean): Promise<DocEvent>;
}

async function instance(prefix: string): Promise<Instance> {
  const etcd = await connectEtcd({ endpoints: [(await server()).endpoint], prefix });
  const events: DocEvent[] = [];
  const listeners = new Set<(event: DocEvent) => void>();
  const locks = await EtcdLockManager.open(etcd, {
    events: {
      publish(event) {
        events.push(event);
        for (const listener of [...listeners]) listener(event);
      },
    },
  });
  return {
    locks,
    etcd,
    events,
    next(predicate) {
      return new Promise((resolve) => {
        const listener = (event: DocEvent) => {
          if (!predicate(event)) return;
          listeners.delete(listener);
          resolve(event);
        };
        listeners.add(listener);
      });
    },
    async [Symbol.asyncDispose]() {
      await locks.close();
      etcd.close();
    },
  };
}

function isAppError(status: string) {
  return (error: unknown) => error instanceof AppError && error.status === status;
}

Deno.test({
  name: "EtcdLockManager: across two instances one holder at a time, waiters served in order" +
    tools.note,
  ignore: tools.ignore,
  async fn() {
    const prefix = `/locks/${crypto.randomUUID()}`;
    await using a = await instance(prefix);
    await using b = await instance(prefix);
    const documentId = newId();
    const seenOnB = b.next((e) => e.type === "lock_acquired");
    const first = await a.locks.acquire("u0", { documentId, ttlMs: 30_000 });
    // B's mirror learns of the lock through its watch and enforces it on writes.
    assert.equal((await seenOnB).lock?.id, first.id);
    assert.throws(
      () => b.locks.assertCanWrite(documentId, "mallory", [["title"]], Date.now()),
      isAppError("FAILED_PRECONDITION"),
    );
    b.locks.assertCanWrite(documentId, "u0", [["title"]], Date.now());
    assert.equal(b.locks.isLocked(documentId, ["x"])?.id, first.id);

    // Four waiters alternate between the instances; each queues (its key is written) in turn.
    // Watch from just after alice's grant, so bob's request is seen even if it lands before
    // the watch is registered.
    const { header } = await a.etcd.client.getAll().prefix(`${prefix}/`).exec();
    const watcher = await a.etcd.client.watch().prefix(`${prefix}/`)
      .startRevision(String(Number(header.revision) + 1)).create();
    const queued = () => new Promise<void>((resolve) => watcher.once("put", () => resolve()));
    const grants: string[] = [];
    const waiters = [];
    for (let i = 1; i <= 4; i++) {
      const put = queued();
      const locks = (i % 2 ? b : a).locks;
      waiters.push(
        locks.acquire(`u${i}`, { documentId, ttlMs: 30_000, waitMs: 20_000 }).then(async (lock) => {
          grants.push(lock.ownerId);
          // Exactly one key of the document is held at this moment.
          const values = await a.etcd.client.getAll().prefix(`${prefix}/`).strings();
          const held = Object.values(values).filter((v) => JSON.parse(v).state === "held");
          assert.equal(held.length, 1);
          return lock;
        }),
      );
      await put;
    }
    await watcher.cancel();
    await a.locks.release("u0", documentId, first.id);
    const locks = [];
    for (const [i, waiter] of waiters.entries()) {
      const lock = await waiter;
      locks.push(lock);
      await (i % 2 ? a : b).locks.release(lock.ownerId, documentId, lock.id);
    }
    assert.deepEqual(grants, ["u1", "u2", "u3", "u4"]);
    const tokens = [first, ...locks].map((l) => l.fencingToken);
    assert.deepEqual(tokens, [...tokens].sort((x, y) => x - y));
    assert.equal(new Set(tokens).size, 5);
  },
});

Deno.test({
  name: "EtcdLockManager: a holder that dies without releasing is freed by its lease" +
    tools.note,
  ignore: tools.ignore,
  async fn() {
    const prefix = `/locks/${crypto.randomUUID()}`;
    await using b = await instance(prefix);
    const documentId = newId();
    let first;
    {
      await using a = await instance(prefix);
      first = await a.locks.acquire("crashy", { documentId, path: ["title"], ttlMs: 1000 });
      // `a` goes away without releasing (as a killed process would).
    }
    const released = b.next((e) => e.type === "lock_released");
    const started = Date.now();
    const lock = await b.locks.acquire("patient", {
      documentId,
      path: ["title", "sub"],
      ttlMs: 5000,
      waitMs: 10_000,
    });
    const waited = Date.now() - started;
    assert.ok(waited < 5000, `waited ${waited} ms`);
    assert.equal((await released).reason, "expired");
    assert.ok(lock.fencingToken > first.fencingToken);
    await b.locks.release("patient", documentId, lock.id);
  },
});

Deno.test({
  name: "EtcdLockManager: no-wait conflicts, renewal keeps the token, only the owner releases" +
    tools.note,
  ignore: tools.ignore,
  async fn() {
    await using a = await instance(`/locks/${crypto.randomUUID()}`);
    const documentId = newId();
    const lock = await a.locks.acquire("alice", { documentId, path: ["a"], ttlMs: 10_000 });
    await assert.rejects(
      a.locks.acquire("bob", { documentId, path: ["a", "b"] }),
      (error) => isAppError("FAILED_PRECONDITION")(error) && /locked by alice/.test(String(error)),
    );
    // A disjoint path and the same owner are not blocked.
    const other = await a.locks.acquire("bob", { documentId, path: ["b"], ttlMs: 10_000 });
    const mine = await a.locks.acquire("alice", { documentId, path: ["a", "c"], ttlMs: 10_000 });
    const renewed = await a.locks.acquire("alice", { documentId, lockId: lock.id, ttlMs: 20_000 });
    assert.equal(renewed.fencingToken, lock.fencingToken);
    assert.ok(renewed.expiresAt > lock.expiresAt);
    await assert.rejects(
      a.locks.acquire("bob", { documentId, lockId: lock.id }),
      isAppError("PERMISSION_DENIED"),
    );
    await assert.rejects(
      a.locks.release("bob", documentId, lock.id),
      isAppError("PERMISSION_DENIED"),
    );
    await a.locks.release("alice", documentId, lock.id);
    await assert.rejects(a.locks.release("alice", documentId, lock.id), isAppError("NOT_FOUND"));
    await a.locks.release("bob", documentId, other.id);
    await a.locks.release("alice", documentId, mine.id);
    await assert.rejects(a.locks.acquire("x", { documentId, ttlMs: -1 }), RangeError);
  },
});

Deno.test({
  name: "EtcdLockManager: an aborted wait withdraws the request" + tools.note,
  ignore: tools.ignore,
  async fn() {
    const prefix = `/locks/${crypto.randomUUID()}`;
    await using a = await instance(prefix);
    const documentId = newId();
    const held = await a.locks.acquire("alice", { documentId, ttlMs: 10_000 });
    const abort = new AbortController();
    const watcher = await a.etcd.client.watch().prefix(`${prefix}/`).create();
    const queued = new Promise<void>((resolve) => watcher.once("put", () => resolve()));
    const waiting = a.locks.acquire("bob", {
      documentId,
      waitMs: 20_000,
      signal: abort.signal,
    });
    await queued;
    await watcher.cancel();
    abort.abort();
    await assert.rejects(waiting, isAppError("CANCELLED"));
    assert.equal(await a.etcd.client.getAll().prefix(`${prefix}/`).count(), 1);
    await a.locks.release("alice", documentId, held.id);
  },
});

Deno.test({
  name: "EtcdLockManager: the acquiring instance enforces a lock at once, and announces each " +
    "change exactly once" + tools.note,
  ignore: tools.ignore,
  async fn() {
    await using a = await instance(`/locks/${crypto.randomUUID()}`);
    const documentId = newId();
    const lock = await a.locks.acquire("alice", { documentId, ttlMs: 10_000 });
    // No wait for the watch: the instance's own grant is already in its mirror.
    assert.throws(
      () => a.locks.assertCanWrite(documentId, "bob", [["x"]], Date.now()),
      isAppError("FAILED_PRECONDITION"),
    );
    await a.locks.acquire("alice", { documentId, lockId: lock.id, ttlMs: 20_000 });
    const released = a.next((e) => e.type === "lock_released");
    await a.locks.release("alice", documentId, lock.id);
    a.locks.assertCanWrite(documentId, "bob", [["x"]], Date.now());
    assert.equal(a.locks.isLocked(documentId), undefined);
    assert.equal((await released).reason, "released");
    const kinds = a.events.map((e) => `${e.type}${e.reason ? `:${e.reason}` : ""}`);
    assert.deepEqual(kinds, ["lock_acquired", "lock_acquired:renewed", "lock_released:released"]);
  },
});

// Runs last (tests in a file run in order): stop the shared server.
Deno.test({
  name: "EtcdLockManager: stop the shared etcd" + tools.note,
  ignore: tools.ignore,
  async fn() {
    await (await shared)?.stop();
  },
});
