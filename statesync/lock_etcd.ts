/**
 * Document and path locks shared by every StateSync instance through etcd: a waiting lock
 * built on leases and revisions (the `etcd3` package's own `lock()` gives up at once).
 *
 * Keys under the prefix `P` (default `/aetherflow/statesync/locks`):
 * `P/<doc>/<lockId>` → `{ownerId, sessionId, path, state, acquiredAt, expiresAt}` as JSON,
 * attached to a lease. A request first writes its key (state `waiting`) on a lease that
 * outlives its wait; its place in the queue is the key's **create revision**. It is granted
 * when no key of the document created before it has an overlapping path and another owner
 * (held or still waiting, as {@link LockManager} orders waiters), and then moves to a lease
 * of the lock's TTL with state `held`. Waiters re-check whenever a key of the document is
 * deleted or changes (watch). The **fencing token is the create revision**: it grows with
 * every grant across all instances and a renewal keeps it. A holder that dies stops
 * renewing; its lease runs out and etcd deletes the key, which wakes the next waiter.
 *
 * Every instance mirrors all lock keys through one prefix watch, so
 * {@link EtcdLockManager.assertCanWrite} (called on every write) and `isLocked` stay
 * synchronous, and every instance publishes `lock_acquired` / `lock_released` to its own
 * subscribers exactly once per change.
 *
 * Lease TTLs are whole seconds and etcd raises them to at least 2 s: a lock's key lives
 * until about `acquiredAt + ceil(ttl)`; writes are refused from `expiresAt` on either way.
 *
 * @example
 * ```ts
 * const locks = await EtcdLockManager.open(etcd, { events: hub });
 * const lock = await locks.acquire("alice", { documentId, path: ["title"], ttlMs: 30_000, waitMs: 5000 });
 * await locks.release("alice", documentId, lock.id);
 * await locks.close();
 * ```
 * @module
 */
import { Buffer } from "node:buffer";
import type { IKeyValue, Watcher } from "etcd3";
import {
  AppError,
  type Clock,
  newId,
  systemClock,
  systemTimers,
  type Timers,
} from "../kernel/mod.ts";
import {
  etcdCompare,
  type EtcdConnection,
  etcdOp,
  etcdTxn,
  grantLease,
  prefixEnd,
  revokeLease,
} from "../kernel/etcd.ts";
import type { Path } from "./json0/types.ts";
import type { EventSink, LockGuard } from "./model.ts";
import type { LockRecord } from "./events.ts";
import type { AcquireLockInput } from "./locks.ts";
import { formatPath, pathsOverlap } from "./_path.ts";

/** Options for {@link EtcdLockManager.open}. */
export interface EtcdLockManagerOptions {
  /** Key prefix (default `<connection prefix>/statesync/locks`). */
  prefix?: string;
  /** Epoch-ms clock (default: wall clock). */
  clock?: Clock;
  /** Timers for wait deadlines (default: real timers). */
  timers?: Timers;
  /** Where lock_acquired / lock_released go (this instance's subscribers). */
  events?: EventSink;
  /** The document version stamped on events (default: 0). */
  versionOf?: (documentId: string) => number;
  /** TTL when the caller gives none (default 30 s). */
  defaultTtlMs?: number;
  /** Largest TTL accepted (default 1 h). */
  maxTtlMs?: number;
  /** Longest wait accepted (default 60 s). */
  maxWaitMs?: number;
  /** Most locks plus waiters per document (default 1000). */
  maxPerDocument?: number;
}

/** What the StateSync service needs from a lock table (implemented by both managers). */
export interface LockService extends LockGuard {
  acquire(ownerId: string, input: AcquireLockInput): Promise<LockRecord>;
  release(ownerId: string, documentId: string, lockId: string): LockRecord | Promise<LockRecord>;
  isLocked(documentId: string, path?: Path): LockRecord | undefined;
  list(documentId: string): LockRecord[];
  count(): number;
  close(): void | Promise<void>;
}

/** The stored value of a lock key. */
interface StoredLock {
  ownerId: string;
  sessionId: string;
  path: Path;
  state: "waiting" | "held";
  acquiredAt: number;
  expiresAt: number;
}

/** A mirrored key. */
interface Entry {
  key: string;
  documentId: string;
  lockId: string;
  createRevision: number;
  modRevision: number;
  lease: string;
  value: StoredLock;
  /** False while only this instance's own write put it here (the watch event is pending). */
  announced: boolean;
  /** For an unannounced entry: it renews a lock already announced. */
  renewal: boolean;
  /** Released by this instance; its delete event is pending. */
  released?: boolean;
}

/** Locks in etcd, mirrored locally by a watch. */
export class EtcdLockManager implements LockService {
  #etcd: EtcdConnection;
  #prefix: string;
  #clock: Clock;
  #timers: Timers;
  #events: EventSink | undefined;
  #versionOf: (documentId: string) => number;
  #defaultTtlMs: number;
  #maxTtlMs: number;
  #maxWaitMs: number;
  #maxPerDocument: number;
  /** documentId → key → entry, every lock key under the prefix. */
  #mirror = new Map<string, Map<string, Entry>>();
  /** Wake-up callbacks of waiting acquires, per document. */
  #wakers = new Map<string, Set<() => void>>();
  #watcher: Watcher | undefined;
  #closed = false;

  private constructor(etcd: EtcdConnection, options: EtcdLockManagerOptions) {
    this.#etcd = etcd;
    this.#prefix = (options.prefix ?? etcd.key("statesync", "locks")).replace(/\/+$/, "");
    this.#clock = options.clock ?? systemClock;
    this.#timers = options.timers ?? systemTimers;
    this.#events = options.events;
    this.#versionOf = options.versionOf ?? (() => 0);
    this.#defaultTtlMs = options.defaultTtlMs ?? 30_000;
    this.#maxTtlMs = options.maxTtlMs ?? 3_600_000;
    this.#maxWaitMs = options.maxWaitMs ?? 60_000;
    this.#maxPerDocument = options.maxPerDocument ?? 1000;
    if (this.#defaultTtlMs < 1 || this.#defaultTtlMs > this.#maxTtlMs) {
      throw new RangeError("Invalid defaultTtlMs: expected 1..maxTtlMs");
    }
  }

  /**
   * Load the current locks and start mirroring changes.
   * @throws {RangeError} for out-of-range options
   */
  static async open(
    etcd: EtcdConnection,
    options: EtcdLockManagerOptions = {},
  ): Promise<EtcdLockManager> {
    const manager = new EtcdLockManager(etcd, options);
    await manager.#start();
    return manager;
  }

  async #start(): Promise<void> {
    const root = this.#prefix + "/";
    const response = await this.#etcd.client.kv.range({
      key: Buffer.from(root),
      range_end: prefixEnd(root),
    });
    for (const kv of response.kvs) this.#put(kv, false);
    const watcher = await this.#etcd.client.watch().prefix(root)
      .startRevision(String(Number(response.header.revision) + 1)).create();
    watcher.on("put", (kv) => this.#put(kv, true));
    watcher.on("delete", (kv) => this.#delete(kv));
    this.#watcher = watcher;
  }

  /**
   * Take a lock (or renew one when `lockId` is given), waiting up to `waitMs` behind
   * earlier conflicting requests from any instance.
   * @throws {RangeError} for a TTL or wait out of range
   * @throws {AppError} FAILED_PRECONDITION naming the holder when a conflicting lock is held
   *   (after waiting `waitMs`), NOT_FOUND for an unknown or expired `lockId`, PERMISSION_DENIED
   *   when renewing someone else's lock, RESOURCE_EXHAUSTED when the document has too many
   *   locks, CANCELLED when `signal` aborts, UNAVAILABLE after {@link close}
   */
  async acquire(ownerId: string, input: AcquireLockInput): Promise<LockRecord> {
    if (this.#closed) throw new AppError("UNAVAILABLE", "Lock manager is closed");
    const ttlMs = input.ttlMs || this.#defaultTtlMs;
    if (!Number.isInteger(ttlMs) || ttlMs < 1 || ttlMs > this.#maxTtlMs) {
      throw new RangeError(`Invalid ttl_ms: expected 1..${this.#maxTtlMs}`);
    }
    const waitMs = input.waitMs ?? 0;
    if (!Number.isInteger(waitMs) || waitMs < 0 || waitMs > this.#maxWaitMs) {
      throw new RangeError(`Invalid wait_ms: expected 0..${this.#maxWaitMs}`);
    }
    if (input.lockId) return await this.#renew(ownerId, input.documentId, input.lockId, ttlMs);
    if (input.signal?.aborted) throw new AppError("CANCELLED", "Lock request cancelled");

    const documentId = input.documentId;
    const path = [...(input.path ?? [])];
    const docPrefix = this.#docPrefix(documentId);
    const present = await this.#etcd.client.getAll().prefix(docPrefix).count();
    if (present >= this.#maxPerDocument) {
      throw new AppError(
        "RESOURCE_EXHAUSTED",
        `Too many locks on document ${documentId} (limit ${this.#maxPerDocument})`,
      );
    }
    const lockId = newId();
    const key = docPrefix + lockId;
    const waitLease = await grantLease(this.#etcd.client, Math.ceil(waitMs / 1000) + 3);
    const value: StoredLock = {
      ownerId,
      sessionId: input.sessionId ?? "",
      path,
      state: "waiting",
      acquiredAt: 0,
      expiresAt: 0,
    };
    const put = await this.#etcd.client.kv.put({
      key: Buffer.from(key),
      value: Buffer.from(JSON.stringify(value)),
      lease: waitLease,
    });
    const createRevision = Number(put.header.revision);
    const giveUp = async () => {
      await revokeLease(this.#etcd.client, waitLease);
    };
    try {
      const deadline = this.#clock.now() + waitMs;
      for (;;) {
        const blocker = await this.#blocker(documentId, ownerId, path, createRevision);
        if (blocker === undefined) {
          return await this.#grant(
            key,
            documentId,
            lockId,
            createRevision,
            value,
            ttlMs,
            waitLease,
          );
        }
        if (waitMs === 0) throw blockedError(documentId, path, blocker);
        const left = deadline - this.#clock.now();
        if (left <= 0) throw blockedError(documentId, path, blocker, waitMs);
        await this.#waitForChange(documentId, left, input.signal);
        if (this.#closed) throw new AppError("UNAVAILABLE", "Lock manager is closing");
        if (input.signal?.aborted) throw new AppError("CANCELLED", "Lock request cancelled");
      }
    } catch (error) {
      await giveUp();
      throw error;
    }
  }

  /** The earliest key before `createRevision` that keeps `ownerId` from locking `path`. */
  async #blocker(
    documentId: string,
    ownerId: string,
    path: Path,
    createRevision: number,
  ): Promise<Entry | undefined> {
    const docPrefix = this.#docPrefix(documentId);
    const response = await this.#etcd.client.kv.range({
      key: Buffer.from(docPrefix),
      range_end: prefixEnd(docPrefix),
      max_create_revision: createRevision - 1,
      sort_target: "Create",
      sort_order: "Ascend",
    });
    for (const kv of response.kvs) {
      const entry = this.#entryOf(kv);
      if (entry === undefined) continue;
      if (entry.value.ownerId !== ownerId && pathsOverlap(entry.value.path, path)) return entry;
    }
    return undefined;
  }

  /** Resolve on the next change of the document's keys, after `ms`, or on abort. */
  #waitForChange(documentId: string, ms: number, signal?: AbortSignal): Promise<void> {
    // An abort that came while the caller was awaiting etcd fires no event: check it here.
    if (signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let wakers = this.#wakers.get(documentId);
      if (wakers === undefined) {
        wakers = new Set();
        this.#wakers.set(documentId, wakers);
      }
      const done = () => {
        this.#timers.clear(timer);
        signal?.removeEventListener("abort", done);
        wakers!.delete(done);
        if (wakers!.size === 0) this.#wakers.delete(documentId);
        resolve();
      };
      const timer = this.#timers.set(done, ms);
      signal?.addEventListener("abort", done, { once: true });
      wakers.add(done);
    });
  }

  /** Move the key to a lease of the lock's TTL and mark it held. */
  async #grant(
    key: string,
    documentId: string,
    lockId: string,
    createRevision: number,
    waiting: StoredLock,
    ttlMs: number,
    waitLease: string,
  ): Promise<LockRecord> {
    const lease = await grantLease(this.#etcd.client, ttlMs / 1000);
    const now = this.#clock.now();
    const value: StoredLock = {
      ...waiting,
      state: "held",
      acquiredAt: now,
      expiresAt: now + ttlMs,
    };
    const result = await etcdTxn(
      this.#etcd.client,
      [etcdCompare.createRevision(key, createRevision)],
      [etcdOp.put(key, JSON.stringify(value), lease)],
    );
    if (!result.succeeded) {
      await revokeLease(this.#etcd.client, lease);
      throw new AppError("ABORTED", `Lock request ${lockId} vanished while waiting; retry`);
    }
    const revision = Number(result.header.revision);
    this.#applyLocal(key, documentId, lockId, createRevision, revision, lease, value);
    await revokeLease(this.#etcd.client, waitLease);
    return toRecord(documentId, lockId, createRevision, value);
  }

  async #renew(
    ownerId: string,
    documentId: string,
    lockId: string,
    ttlMs: number,
  ): Promise<LockRecord> {
    const key = this.#docPrefix(documentId) + lockId;
    const kv = (await this.#etcd.client.get(key).exec()).kvs[0];
    const entry = kv === undefined ? undefined : this.#entryOf(kv);
    const now = this.#clock.now();
    if (entry === undefined || entry.value.state !== "held" || entry.value.expiresAt <= now) {
      throw new AppError("NOT_FOUND", `Lock ${lockId} not found or expired`);
    }
    if (entry.value.ownerId !== ownerId) {
      throw new AppError(
        "PERMISSION_DENIED",
        `Lock ${lockId} is held by ${entry.value.ownerId}; only its owner may renew it`,
      );
    }
    const lease = await grantLease(this.#etcd.client, ttlMs / 1000);
    const value: StoredLock = { ...entry.value, expiresAt: now + ttlMs };
    const result = await etcdTxn(
      this.#etcd.client,
      [etcdCompare.modRevision(key, entry.modRevision)],
      [etcdOp.put(key, JSON.stringify(value), lease)],
    );
    if (!result.succeeded) {
      await revokeLease(this.#etcd.client, lease);
      throw new AppError("NOT_FOUND", `Lock ${lockId} not found or expired`);
    }
    const revision = Number(result.header.revision);
    this.#applyLocal(key, documentId, lockId, entry.createRevision, revision, lease, value);
    await revokeLease(this.#etcd.client, entry.lease);
    return toRecord(documentId, lockId, entry.createRevision, value);
  }

  /**
   * Release a lock.
   * @throws {AppError} NOT_FOUND for an unknown or expired lock, PERMISSION_DENIED when
   *   `ownerId` does not hold it
   */
  async release(ownerId: string, documentId: string, lockId: string): Promise<LockRecord> {
    const key = this.#docPrefix(documentId) + lockId;
    const kv = (await this.#etcd.client.get(key).exec()).kvs[0];
    const entry = kv === undefined ? undefined : this.#entryOf(kv);
    if (
      entry === undefined || entry.value.state !== "held" ||
      entry.value.expiresAt <= this.#clock.now()
    ) {
      throw new AppError("NOT_FOUND", `Lock ${lockId} not found or expired`);
    }
    if (entry.value.ownerId !== ownerId) {
      throw new AppError(
        "PERMISSION_DENIED",
        `Lock ${lockId} is held by ${entry.value.ownerId}; only its owner may release it`,
      );
    }
    await revokeLease(this.#etcd.client, entry.lease);
    // Stop enforcing it here at once; the watch's delete event removes it and announces it.
    const mirrored = this.#mirror.get(documentId)?.get(key);
    if (mirrored !== undefined) mirrored.released = true;
    return toRecord(documentId, lockId, entry.createRevision, entry.value);
  }

  /** The live lock covering `path` (or overlapping it), if any; the earliest granted first. */
  isLocked(documentId: string, path: Path = []): LockRecord | undefined {
    return this.list(documentId).find((record) => pathsOverlap(record.path, path));
  }

  /** Live locks of a document (as mirrored here), in grant order. */
  list(documentId: string): LockRecord[] {
    const now = this.#clock.now();
    return [...(this.#mirror.get(documentId)?.values() ?? [])]
      .filter((e) => e.value.state === "held" && e.value.expiresAt > now && !e.released)
      .sort((a, b) => a.createRevision - b.createRevision)
      .map((e) => toRecord(e.documentId, e.lockId, e.createRevision, e.value));
  }

  /** Number of live locks over all documents. */
  count(): number {
    let n = 0;
    for (const documentId of this.#mirror.keys()) n += this.list(documentId).length;
    return n;
  }

  /** @inheritdoc */
  assertCanWrite(documentId: string, actorId: string, paths: readonly Path[], now: number): void {
    for (const entry of this.#mirror.get(documentId)?.values() ?? []) {
      const record = entry.value;
      if (
        record.state !== "held" || record.ownerId === actorId || record.expiresAt <= now ||
        entry.released
      ) {
        continue;
      }
      for (const path of paths) {
        if (pathsOverlap(record.path, path)) {
          const lock = toRecord(documentId, entry.lockId, entry.createRevision, record);
          throw new AppError(
            "FAILED_PRECONDITION",
            `Path ${formatPath(path)} is locked by ${record.ownerId} (lock ${entry.lockId} on ` +
              `${formatPath(record.path)} until ${new Date(record.expiresAt).toISOString()})`,
            { details: { lock } },
          );
        }
      }
    }
  }

  /**
   * Stop mirroring; pending acquires fail with UNAVAILABLE (their requests are withdrawn).
   * Held locks stay in etcd until released or expired, as their owners expect.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const wakers of [...this.#wakers.values()]) for (const wake of [...wakers]) wake();
    await this.#watcher?.cancel();
  }

  #docPrefix(documentId: string): string {
    return `${this.#prefix}/${encodeURIComponent(documentId)}/`;
  }

  #entryOf(kv: IKeyValue): Entry | undefined {
    const key = kv.key.toString();
    const rest = key.slice(this.#prefix.length + 1).split("/");
    if (rest.length !== 2) return undefined;
    return {
      key,
      documentId: decodeURIComponent(rest[0]!),
      lockId: decodeURIComponent(rest[1]!),
      createRevision: Number(kv.create_revision),
      modRevision: Number(kv.mod_revision),
      lease: String(kv.lease),
      value: JSON.parse(kv.value.toString()) as StoredLock,
      announced: true,
      renewal: false,
    };
  }

  /**
   * Put this instance's own successful write into the mirror at once, so its next write
   * check sees it; the watch event announces it later.
   */
  #applyLocal(
    key: string,
    documentId: string,
    lockId: string,
    createRevision: number,
    modRevision: number,
    lease: string,
    value: StoredLock,
  ): void {
    let doc = this.#mirror.get(documentId);
    if (doc === undefined) {
      doc = new Map();
      this.#mirror.set(documentId, doc);
    }
    const before = doc.get(key);
    if (before !== undefined && before.modRevision >= modRevision) return;
    const renewal = before?.value.state === "held" && before.announced;
    doc.set(key, {
      key,
      documentId,
      lockId,
      createRevision,
      modRevision,
      lease,
      value,
      announced: false,
      renewal,
    });
  }

  #put(kv: IKeyValue, notify: boolean): void {
    const entry = this.#entryOf(kv);
    if (entry === undefined) return;
    let doc = this.#mirror.get(entry.documentId);
    if (doc === undefined) {
      doc = new Map();
      this.#mirror.set(entry.documentId, doc);
    }
    const before = doc.get(entry.key);
    if (before !== undefined && before.modRevision > entry.modRevision) return;
    doc.set(entry.key, entry);
    if (notify && entry.value.state === "held") {
      const renewed = before !== undefined && before.modRevision === entry.modRevision
        ? !before.announced && before.renewal
        : before?.value.state === "held";
      const echo = before?.modRevision === entry.modRevision && before.announced;
      if (!echo) this.#publish("lock_acquired", entry, renewed ? "renewed" : undefined);
    }
    this.#wake(entry.documentId);
  }

  #delete(kv: IKeyValue): void {
    const key = kv.key.toString();
    const rest = key.slice(this.#prefix.length + 1).split("/");
    const documentId = decodeURIComponent(rest[0] ?? "");
    const doc = this.#mirror.get(documentId);
    const entry = doc?.get(key);
    if (doc === undefined || entry === undefined) return;
    doc.delete(key);
    if (doc.size === 0) this.#mirror.delete(documentId);
    if (entry.value.state === "held") {
      const expired = entry.value.expiresAt <= this.#clock.now();
      this.#publish("lock_released", entry, expired ? "expired" : "released");
    }
    this.#wake(documentId);
  }

  #wake(documentId: string): void {
    for (const wake of [...(this.#wakers.get(documentId) ?? [])]) wake();
  }

  #publish(type: "lock_acquired" | "lock_released", entry: Entry, reason?: string): void {
    const lock = toRecord(entry.documentId, entry.lockId, entry.createRevision, entry.value);
    this.#events?.publish({
      type,
      documentId: entry.documentId,
      version: this.#versionOf(entry.documentId),
      timestamp: this.#clock.now(),
      userId: lock.ownerId,
      lock,
      ...(reason === undefined ? {} : { reason }),
    });
  }
}

function toRecord(
  documentId: string,
  lockId: string,
  createRevision: number,
  value: StoredLock,
): LockRecord {
  return {
    id: lockId,
    documentId,
    path: [...value.path],
    ownerId: value.ownerId,
    sessionId: value.sessionId,
    acquiredAt: value.acquiredAt,
    expiresAt: value.expiresAt,
    fencingToken: createRevision,
  };
}

function blockedError(
  documentId: string,
  path: Path,
  blocker: Entry,
  waitedMs?: number,
): AppError {
  const waited = waitedMs === undefined ? "" : ` after waiting ${waitedMs} ms`;
  const value = blocker.value;
  if (value.state === "held") {
    const lock = toRecord(documentId, blocker.lockId, blocker.createRevision, value);
    return new AppError(
      "FAILED_PRECONDITION",
      `Path ${formatPath(path)} of document ${documentId} is locked by ${value.ownerId} ` +
        `(lock ${blocker.lockId} on ${formatPath(value.path)} until ` +
        `${new Date(value.expiresAt).toISOString()})${waited}`,
      { details: { lock } },
    );
  }
  return new AppError(
    "FAILED_PRECONDITION",
    `Path ${formatPath(path)} of document ${documentId} is queued for ${value.ownerId}${waited}`,
  );
}
