/**
 * Document and path locks with a TTL: acquire (optionally waiting, waiters served in
 * order), renew, release (owner only), expiry, fencing tokens, and the {@link LockGuard}
 * the document engine calls before every write.
 *
 * Locks are ephemeral (kept in memory, like presence). Two locks conflict when their paths
 * overlap (one is a prefix of the other; `[]` is the whole document) and their owners
 * differ; a user's own locks never block that user.
 *
 * @example
 * ```ts
 * const locks = new LockManager({ events: hub });
 * const lock = await locks.acquire("alice", { documentId, path: ["title"], ttlMs: 30_000 });
 * locks.assertCanWrite(documentId, "bob", [["title"]], Date.now()); // throws FAILED_PRECONDITION
 * locks.release("alice", documentId, lock.id);
 * ```
 * @module
 */
import {
  AppError,
  type Clock,
  newId,
  systemClock,
  systemTimers,
  type TimerHandle,
  type Timers,
} from "../kernel/mod.ts";
import type { Path } from "./json0/types.ts";
import type { EventSink, LockGuard } from "./model.ts";
import type { LockRecord } from "./events.ts";
import { formatPath, pathsOverlap } from "./_path.ts";

/** Options for {@link LockManager}. */
export interface LockManagerOptions {
  /** Epoch-ms clock (default: wall clock). */
  clock?: Clock;
  /** Timers for expiry and wait deadlines (default: real timers). */
  timers?: Timers;
  /** Where lock_acquired / lock_released go. */
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

/** Input of {@link LockManager.acquire}. */
export interface AcquireLockInput {
  documentId: string;
  /** Subtree to lock; omitted or `[]` = the whole document. */
  path?: Path;
  sessionId?: string;
  /** Lifetime from now; 0 or omitted = the default. */
  ttlMs?: number;
  /** Renew this lock (same owner) instead of taking a new one. */
  lockId?: string;
  /** Wait up to this long for conflicting locks to go away (0 = fail at once). */
  waitMs?: number;
  /** Stops a wait (e.g. the caller went away): rejects with CANCELLED, nothing is granted. */
  signal?: AbortSignal;
}

interface Waiter {
  ownerId: string;
  sessionId: string;
  path: Path;
  ttlMs: number;
  timer: TimerHandle;
  resolve: (lock: LockRecord) => void;
  reject: (error: unknown) => void;
}

interface DocumentLocks {
  held: Map<string, { record: LockRecord; timer: TimerHandle }>;
  waiters: Waiter[];
}

/** The lock table of one StateSync instance. */
export class LockManager implements LockGuard {
  #clock: Clock;
  #timers: Timers;
  #events: EventSink | undefined;
  #versionOf: (documentId: string) => number;
  #defaultTtlMs: number;
  #maxTtlMs: number;
  #maxWaitMs: number;
  #maxPerDocument: number;
  #docs = new Map<string, DocumentLocks>();
  /** Last fencing token per document; kept after the locks go so tokens never repeat. */
  #tokens = new Map<string, number>();
  #closed = false;

  constructor(options: LockManagerOptions = {}) {
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
   * Take a lock (or renew one when `lockId` is given).
   * @throws {RangeError} for a TTL or wait out of range
   * @throws {AppError} FAILED_PRECONDITION naming the holder when a conflicting lock is held
   *   (after waiting `waitMs`), NOT_FOUND for an unknown or expired `lockId`, PERMISSION_DENIED
   *   when renewing someone else's lock, RESOURCE_EXHAUSTED when the document has too many
   *   locks, UNAVAILABLE after {@link LockManager.close}
   */
  acquire(ownerId: string, input: AcquireLockInput): Promise<LockRecord> {
    try {
      return Promise.resolve(this.#acquire(ownerId, input));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #acquire(ownerId: string, input: AcquireLockInput): LockRecord | Promise<LockRecord> {
    if (this.#closed) throw new AppError("UNAVAILABLE", "Lock manager is closed");
    const ttlMs = input.ttlMs || this.#defaultTtlMs;
    if (!Number.isInteger(ttlMs) || ttlMs < 1 || ttlMs > this.#maxTtlMs) {
      throw new RangeError(`Invalid ttl_ms: expected 1..${this.#maxTtlMs}`);
    }
    const waitMs = input.waitMs ?? 0;
    if (!Number.isInteger(waitMs) || waitMs < 0 || waitMs > this.#maxWaitMs) {
      throw new RangeError(`Invalid wait_ms: expected 0..${this.#maxWaitMs}`);
    }
    const now = this.#clock.now();
    if (input.lockId) return this.#renew(ownerId, input.documentId, input.lockId, ttlMs, now);

    const path = [...(input.path ?? [])];
    const sessionId = input.sessionId ?? "";
    const doc = this.#doc(input.documentId);
    if (doc.held.size + doc.waiters.length >= this.#maxPerDocument) {
      throw new AppError(
        "RESOURCE_EXHAUSTED",
        `Too many locks on document ${input.documentId} (limit ${this.#maxPerDocument})`,
      );
    }
    const blocker = this.#blocker(doc, ownerId, path, now, doc.waiters.length);
    if (blocker === undefined) {
      return this.#grant(input.documentId, ownerId, sessionId, path, ttlMs);
    }
    if (waitMs === 0) {
      this.#dropIfEmpty(input.documentId);
      throw blockedError(input.documentId, path, blocker);
    }
    const signal = input.signal;
    if (signal?.aborted) throw new AppError("CANCELLED", "Lock request cancelled");
    return new Promise<LockRecord>((resolve, reject) => {
      const onAbort = () => {
        const index = doc.waiters.indexOf(waiter);
        if (index < 0) return;
        doc.waiters.splice(index, 1);
        this.#timers.clear(waiter.timer);
        reject(new AppError("CANCELLED", "Lock request cancelled"));
        this.#serveWaiters(input.documentId);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      const waiter: Waiter = {
        ownerId,
        sessionId,
        path,
        ttlMs,
        resolve: (lock) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(lock);
        },
        reject: (error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(error);
        },
        timer: this.#timers.set(() => {
          const index = doc.waiters.indexOf(waiter);
          if (index < 0) return;
          doc.waiters.splice(index, 1);
          const now = this.#clock.now();
          const holder = this.#blocker(doc, ownerId, path, now, index);
          waiter.reject(
            holder === undefined
              ? new AppError(
                "FAILED_PRECONDITION",
                `Timed out waiting for lock on ${formatPath(path)}`,
              )
              : blockedError(input.documentId, path, holder, waitMs),
          );
          this.#serveWaiters(input.documentId);
        }, waitMs),
      };
      doc.waiters.push(waiter);
    });
  }

  /**
   * Release a lock.
   * @throws {AppError} NOT_FOUND for an unknown or expired lock, PERMISSION_DENIED when
   *   `ownerId` does not hold it
   */
  release(ownerId: string, documentId: string, lockId: string): LockRecord {
    const entry = this.#docs.get(documentId)?.held.get(lockId);
    if (entry === undefined || entry.record.expiresAt <= this.#clock.now()) {
      throw new AppError("NOT_FOUND", `Lock ${lockId} not found or expired`);
    }
    if (entry.record.ownerId !== ownerId) {
      throw new AppError(
        "PERMISSION_DENIED",
        `Lock ${lockId} is held by ${entry.record.ownerId}; only its owner may release it`,
      );
    }
    this.#remove(documentId, lockId, "released");
    return entry.record;
  }

  /** The live lock covering `path` (or overlapping it), if any; the earliest granted first. */
  isLocked(documentId: string, path: Path = []): LockRecord | undefined {
    const now = this.#clock.now();
    for (const { record } of this.#docs.get(documentId)?.held.values() ?? []) {
      if (record.expiresAt > now && pathsOverlap(record.path, path)) return record;
    }
    return undefined;
  }

  /** Live locks of a document, in grant order. */
  list(documentId: string): LockRecord[] {
    const now = this.#clock.now();
    return [...(this.#docs.get(documentId)?.held.values() ?? [])]
      .map((entry) => entry.record)
      .filter((record) => record.expiresAt > now);
  }

  /** Number of live locks over all documents. */
  count(): number {
    const now = this.#clock.now();
    let n = 0;
    for (const doc of this.#docs.values()) {
      for (const { record } of doc.held.values()) if (record.expiresAt > now) n++;
    }
    return n;
  }

  /** @inheritdoc */
  assertCanWrite(documentId: string, actorId: string, paths: readonly Path[], now: number): void {
    const doc = this.#docs.get(documentId);
    if (doc === undefined) return;
    for (const { record } of doc.held.values()) {
      if (record.ownerId === actorId || record.expiresAt <= now) continue;
      for (const path of paths) {
        if (pathsOverlap(record.path, path)) {
          throw new AppError(
            "FAILED_PRECONDITION",
            `Path ${formatPath(path)} is locked by ${record.ownerId} (lock ${record.id} on ` +
              `${formatPath(record.path)} until ${new Date(record.expiresAt).toISOString()})`,
            { details: { lock: record } },
          );
        }
      }
    }
  }

  /** Release everything without events and fail every waiter with UNAVAILABLE. */
  close(): void {
    this.#closed = true;
    for (const doc of this.#docs.values()) {
      for (const { timer } of doc.held.values()) this.#timers.clear(timer);
      for (const waiter of doc.waiters) {
        this.#timers.clear(waiter.timer);
        waiter.reject(new AppError("UNAVAILABLE", "Lock manager is closing"));
      }
    }
    this.#docs.clear();
  }

  #renew(ownerId: string, documentId: string, lockId: string, ttlMs: number, now: number) {
    const entry = this.#docs.get(documentId)?.held.get(lockId);
    if (entry === undefined || entry.record.expiresAt <= now) {
      throw new AppError("NOT_FOUND", `Lock ${lockId} not found or expired`);
    }
    if (entry.record.ownerId !== ownerId) {
      throw new AppError(
        "PERMISSION_DENIED",
        `Lock ${lockId} is held by ${entry.record.ownerId}; only its owner may renew it`,
      );
    }
    this.#timers.clear(entry.timer);
    entry.record = { ...entry.record, expiresAt: now + ttlMs };
    entry.timer = this.#timers.set(() => this.#expire(documentId, lockId), ttlMs);
    this.#publish("lock_acquired", entry.record, "renewed");
    return entry.record;
  }

  #grant(documentId: string, ownerId: string, sessionId: string, path: Path, ttlMs: number) {
    const now = this.#clock.now();
    const fencingToken = (this.#tokens.get(documentId) ?? 0) + 1;
    this.#tokens.set(documentId, fencingToken);
    const record: LockRecord = {
      id: newId(),
      documentId,
      path,
      ownerId,
      sessionId,
      acquiredAt: now,
      expiresAt: now + ttlMs,
      fencingToken,
    };
    const timer = this.#timers.set(() => this.#expire(documentId, record.id), ttlMs);
    this.#doc(documentId).held.set(record.id, { record, timer });
    this.#publish("lock_acquired", record);
    return record;
  }

  #expire(documentId: string, lockId: string): void {
    const entry = this.#docs.get(documentId)?.held.get(lockId);
    if (entry === undefined) return;
    if (entry.record.expiresAt > this.#clock.now()) {
      // Renewed in the meantime without this timer being cleared: re-arm.
      entry.timer = this.#timers.set(
        () => this.#expire(documentId, lockId),
        entry.record.expiresAt - this.#clock.now(),
      );
      return;
    }
    this.#remove(documentId, lockId, "expired");
  }

  #remove(documentId: string, lockId: string, reason: string): void {
    const doc = this.#docs.get(documentId);
    const entry = doc?.held.get(lockId);
    if (doc === undefined || entry === undefined) return;
    this.#timers.clear(entry.timer);
    doc.held.delete(lockId);
    this.#publish("lock_released", entry.record, reason);
    this.#serveWaiters(documentId);
  }

  /** Grant waiters in arrival order; a waiter never overtakes an earlier one it overlaps. */
  #serveWaiters(documentId: string): void {
    const doc = this.#docs.get(documentId);
    if (doc === undefined) return;
    const now = this.#clock.now();
    for (let i = 0; i < doc.waiters.length;) {
      const waiter = doc.waiters[i]!;
      if (this.#blocker(doc, waiter.ownerId, waiter.path, now, i) !== undefined) {
        i++;
        continue;
      }
      doc.waiters.splice(i, 1);
      this.#timers.clear(waiter.timer);
      waiter.resolve(
        this.#grant(documentId, waiter.ownerId, waiter.sessionId, waiter.path, waiter.ttlMs),
      );
    }
    this.#dropIfEmpty(documentId);
  }

  /** What keeps `ownerId` from locking `path`: a live lock, or one of the first `waiters`. */
  #blocker(
    doc: DocumentLocks,
    ownerId: string,
    path: Path,
    now: number,
    waiters: number,
  ): LockRecord | Waiter | undefined {
    for (const { record } of doc.held.values()) {
      if (record.ownerId !== ownerId && record.expiresAt > now && pathsOverlap(record.path, path)) {
        return record;
      }
    }
    for (let i = 0; i < waiters; i++) {
      const waiter = doc.waiters[i]!;
      if (waiter.ownerId !== ownerId && pathsOverlap(waiter.path, path)) return waiter;
    }
    return undefined;
  }

  #doc(documentId: string): DocumentLocks {
    let doc = this.#docs.get(documentId);
    if (doc === undefined) {
      doc = { held: new Map(), waiters: [] };
      this.#docs.set(documentId, doc);
    }
    return doc;
  }

  #dropIfEmpty(documentId: string): void {
    const doc = this.#docs.get(documentId);
    if (doc !== undefined && doc.held.size === 0 && doc.waiters.length === 0) {
      this.#docs.delete(documentId);
    }
  }

  #publish(type: "lock_acquired" | "lock_released", lock: LockRecord, reason?: string): void {
    this.#events?.publish({
      type,
      documentId: lock.documentId,
      version: this.#versionOf(lock.documentId),
      timestamp: this.#clock.now(),
      userId: lock.ownerId,
      lock,
      ...(reason === undefined ? {} : { reason }),
    });
  }
}

function blockedError(
  documentId: string,
  path: Path,
  blocker: LockRecord | Waiter,
  waitedMs?: number,
): AppError {
  const waited = waitedMs === undefined ? "" : ` after waiting ${waitedMs} ms`;
  if ("id" in blocker) {
    return new AppError(
      "FAILED_PRECONDITION",
      `Path ${formatPath(path)} of document ${documentId} is locked by ${blocker.ownerId} ` +
        `(lock ${blocker.id} on ${formatPath(blocker.path)} until ` +
        `${new Date(blocker.expiresAt).toISOString()})${waited}`,
      { details: { lock: blocker } },
    );
  }
  return new AppError(
    "FAILED_PRECONDITION",
    `Path ${formatPath(path)} of document ${documentId} is queued for ${blocker.ownerId}${waited}`,
  );
}
