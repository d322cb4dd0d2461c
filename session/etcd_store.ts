/**
 * A {@link SessionStore} on etcd v3, for running several session instances against one
 * shared, replicated store.
 *
 * Key layout under the configured prefix `P` (default `/aetherflow/session`); every path
 * part is URI-encoded, every key of a session is attached to that session's **lease**:
 * - `P/s/<id>` → the {@link StoredSession} as JSON
 * - `P/c/<connectionId>` → session id
 * - `P/t/<tokenHash>` → session id (current and rotated tokens)
 * - `P/u/<userId>/<id>` → "" for each session of the user that is not terminated
 * - `P/g/<userId>` → insert guard: rewritten by every insert for the user, so two
 *   concurrent inserts cannot both pass the per-user limit (its mod revision is compared)
 * - `P/x/<expiresAt, 16 digits>/<id>` → session id (expiry index for {@link sweep})
 *
 * Expiry without a sweeper: a session's keys sit on a lease that runs out at most ~2 s after
 * `expiresAt`, so etcd deletes the session with all its index entries by itself. Sessions
 * expiring in the same second share a lease (one grant per second of expiry, not per
 * session). A change of `expiresAt` (heartbeat) moves every key to the matching lease in the
 * same transaction; leases are never revoked, they run out. Reads still compare `expiresAt`
 * with the caller's `now` (the store contract), and {@link EtcdSessionStore.sweep} removes
 * sessions expired by the caller's clock before their lease runs out.
 *
 * Every change is one etcd transaction guarded by mod-revision comparisons of the session
 * and the index keys it relies on, retried on conflict.
 *
 * @example
 * ```ts
 * const etcd = await connectEtcd({ endpoints: ["http://127.0.0.1:2379"] });
 * const store = new EtcdSessionStore(etcd, { prefix: etcd.key("session") });
 * await store.insert(record, { now: Date.now(), maxPerUser: 10, onLimit: "evict_oldest" });
 * ```
 * @module
 */
import { AppError } from "../kernel/mod.ts";
import {
  type EtcdCompare,
  etcdCompare,
  type EtcdConnection,
  type EtcdOp,
  etcdOp,
  etcdTxn,
  grantLease,
  padNumber,
  prefixEnd,
  rangeResults,
} from "../kernel/etcd.ts";
import { Buffer } from "node:buffer";
import type { StoredSession } from "./model.ts";
import {
  type InsertOptions,
  type InsertResult,
  isLive,
  matchesQuery,
  type PageRequest,
  type SessionPage,
  type SessionQuery,
  type SessionStore,
} from "./store.ts";

const MAX_ATTEMPTS = 32;
const SCAN_BATCH = 500;
const READ_BATCH = 64;

/** Options for {@link EtcdSessionStore}. */
export interface EtcdSessionStoreOptions {
  /** Key prefix (default `<connection prefix>/session`). */
  prefix?: string;
  /** Close the etcd connection on {@link EtcdSessionStore.close} (default false). */
  ownsConnection?: boolean;
}

/** A session read with the revisions needed to guard a write. */
interface Versioned {
  session: StoredSession;
  modRevision: string;
  lease: string;
}

/** Sessions in etcd, with per-session leases. */
export class EtcdSessionStore implements SessionStore, AsyncDisposable {
  #etcd: EtcdConnection;
  #prefix: string;
  #owns: boolean;
  #closed = false;
  /** Shared leases by expiry second (monotonic clock). */
  #leases = new Map<number, Promise<string>>();

  /** Use an open etcd connection (see `connectEtcd`). */
  constructor(etcd: EtcdConnection, options: EtcdSessionStoreOptions = {}) {
    this.#etcd = etcd;
    this.#prefix = (options.prefix ?? etcd.key("session")).replace(/\/+$/, "");
    this.#owns = options.ownsConnection ?? false;
  }

  /** The key prefix in use. */
  get prefix(): string {
    return this.#prefix;
  }

  /** See {@link SessionStore.insert}. */
  async insert(session: StoredSession, options: InsertOptions): Promise<InsertResult> {
    this.#assertOpen();
    const { now } = options;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const guardKey = this.#k("g", session.userId);
      const connKey = session.connectionId === "" ? null : this.#k("c", session.connectionId);
      const reads = [
        etcdOp.get(this.#k("s", session.id)),
        etcdOp.get(guardKey),
        etcdOp.prefix(this.#k("u", session.userId) + "/"),
      ];
      if (connKey !== null) reads.push(etcdOp.get(connKey));
      const [own, guard, userIndex, conn] = rangeResults(
        await etcdTxn(this.#etcd.client, [], reads),
      );
      if (own!.length > 0) {
        throw new AppError("ALREADY_EXISTS", `Session ${session.id} already exists`);
      }
      const compare: EtcdCompare[] = [
        etcdCompare.createRevision(this.#k("s", session.id), 0),
        etcdCompare.modRevision(guardKey, guard![0]?.mod_revision ?? 0),
      ];
      if (connKey !== null) {
        const holderId = conn![0]?.value.toString();
        if (holderId !== undefined) {
          const holder = await this.#read(holderId);
          if (holder !== null && isLive(holder.session, now)) {
            throw new AppError(
              "ALREADY_EXISTS",
              "Invalid connection_id: in use by another session",
            );
          }
        }
        compare.push(etcdCompare.modRevision(connKey, conn![0]?.mod_revision ?? 0));
      }
      const ids = userIndex!.map((kv) => decodeURIComponent(lastPart(kv.key.toString())));
      const live = (await this.#readMany(ids)).filter((v) => isLive(v.session, now))
        .sort((a, b) => (a.session.id < b.session.id ? -1 : 1));
      const evicted: Versioned[] = [];
      while (live.length >= options.maxPerUser) {
        if (options.onLimit === "refuse") {
          throw new AppError(
            "RESOURCE_EXHAUSTED",
            `User ${session.userId} already has ${live.length} sessions (limit ${options.maxPerUser})`,
          );
        }
        evicted.push(live.shift()!);
      }
      const ops: EtcdOp[] = [];
      for (const victim of evicted) {
        compare.push(etcdCompare.modRevision(this.#k("s", victim.session.id), victim.modRevision));
        ops.push(...(await this.#removalOps(victim.session)));
      }
      const lease = await this.#leaseFor(session.expiresAt, now);
      ops.push(...this.#keysOf(session, lease));
      ops.push(etcdOp.put(guardKey, session.id, lease));
      const result = await this.#txn(compare, ops, lease);
      if (result?.succeeded) return { evicted: evicted.map((v) => v.session.id) };
    }
    throw new AppError("ABORTED", "Too much contention creating the session; retry");
  }

  /** See {@link SessionStore.get}. */
  async get(id: string, now: number): Promise<StoredSession | null> {
    this.#assertOpen();
    const found = await this.#read(id);
    return found !== null && found.session.expiresAt > now ? found.session : null;
  }

  /** See {@link SessionStore.getByConnectionId}. */
  async getByConnectionId(connectionId: string, now: number): Promise<StoredSession | null> {
    this.#assertOpen();
    const id = await this.#etcd.client.get(this.#k("c", connectionId)).string();
    if (id === null) return null;
    const session = await this.get(id, now);
    return session?.connectionId === connectionId ? session : null;
  }

  /** See {@link SessionStore.getByTokenHash}. */
  async getByTokenHash(tokenHash: string, now: number): Promise<StoredSession | null> {
    this.#assertOpen();
    const id = await this.#etcd.client.get(this.#k("t", tokenHash)).string();
    return id === null ? null : await this.get(id, now);
  }

  /** See {@link SessionStore.update}. */
  async update(
    id: string,
    now: number,
    mutate: (current: StoredSession) => StoredSession,
  ): Promise<StoredSession> {
    this.#assertOpen();
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const found = await this.#read(id);
      if (found === null || found.session.expiresAt <= now) {
        throw new AppError("NOT_FOUND", `Session ${id} not found`);
      }
      const current = found.session;
      const next = mutate(structuredClone(current));
      const compare = [etcdCompare.modRevision(this.#k("s", id), found.modRevision)];
      const ops: EtcdOp[] = [];
      const newLease = next.expiresAt !== current.expiresAt
        ? await this.#leaseFor(next.expiresAt, now)
        : null;
      const lease = newLease ?? found.lease;
      if (next.connectionId !== current.connectionId) {
        if (current.connectionId !== "") {
          ops.push(...(await this.#connectionRelease(current, compare)));
        }
        if (next.connectionId !== "") {
          const key = this.#k("c", next.connectionId);
          const kv = (await this.#etcd.client.get(key).exec()).kvs[0];
          const holder = kv === undefined ? null : await this.#read(kv.value.toString());
          if (holder !== null && holder.session.id !== id && isLive(holder.session, now)) {
            throw new AppError(
              "ALREADY_EXISTS",
              "Invalid connection_id: in use by another session",
            );
          }
          compare.push(etcdCompare.modRevision(key, kv?.mod_revision ?? 0));
        }
      }
      const after = new Set([next.tokenHash, ...next.rotatedTokenHashes]);
      for (const hash of [current.tokenHash, ...current.rotatedTokenHashes]) {
        if (!after.has(hash)) ops.push(etcdOp.delete(this.#k("t", hash)));
      }
      if (next.expiresAt !== current.expiresAt) {
        ops.push(etcdOp.delete(this.#expiryKey(current)));
      }
      if (next.state === "terminated" && current.state !== "terminated") {
        ops.push(etcdOp.delete(this.#k("u", current.userId, id)));
      }
      // Rewrite every key the session owns: on the new lease when the expiry moved.
      ops.push(...this.#keysOf(next, lease));
      const result = await this.#txn(compare, ops, lease);
      if (result?.succeeded) return next;
    }
    throw new AppError("ABORTED", `Too much contention updating session ${id}; retry`);
  }

  /** See {@link SessionStore.delete}. */
  async delete(id: string, now: number): Promise<boolean> {
    this.#assertOpen();
    const removed = await this.#removeWhere(id, () => true);
    return removed !== null && removed.expiresAt > now;
  }

  /** See {@link SessionStore.list}. */
  async list(query: SessionQuery, page: PageRequest, now: number): Promise<SessionPage> {
    this.#assertOpen();
    const sessions: StoredSession[] = [];
    let more = false;
    for await (const session of this.#scan(query, page.after, now)) {
      if (sessions.length === page.limit) {
        more = true;
        break;
      }
      sessions.push(session);
    }
    return { sessions, nextAfter: more ? sessions.at(-1)!.id : null };
  }

  /** See {@link SessionStore.count}. */
  async count(query: SessionQuery, now: number): Promise<number> {
    this.#assertOpen();
    let count = 0;
    for await (const _ of this.#scan(query, undefined, now)) count++;
    return count;
  }

  /**
   * Remove up to `limit` sessions expired by the caller's clock. Leases remove sessions on
   * their own; this only matters when the caller's clock runs ahead of etcd's.
   */
  async sweep(now: number, limit = 1000): Promise<number> {
    this.#assertOpen();
    const start = this.#k("x") + "/";
    const response = await this.#etcd.client.kv.range({
      key: Buffer.from(start),
      range_end: Buffer.from(start + padNumber(now + 1)),
      limit,
    });
    let removed = 0;
    for (const kv of response.kvs) {
      const id = kv.value.toString();
      const gone = await this.#removeWhere(id, (session) => session.expiresAt <= now);
      if (gone !== null) removed++;
      else await this.#etcd.client.delete().key(kv.key).exec(); // orphan entry
    }
    return removed;
  }

  /** Stop using the store (closes the connection when it owns it). Idempotent. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      if (this.#owns) this.#etcd.close();
    }
    return Promise.resolve();
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw new AppError("UNAVAILABLE", "Session store is closed");
  }

  #k(kind: string, ...parts: string[]): string {
    return [this.#prefix, kind, ...parts.map(encodeURIComponent)].join("/");
  }

  #expiryKey(session: StoredSession): string {
    return this.#k("x", padNumber(Math.max(0, session.expiresAt)), session.id);
  }

  async #read(id: string): Promise<Versioned | null> {
    const kv = (await this.#etcd.client.get(this.#k("s", id)).exec()).kvs[0];
    return kv === undefined ? null : versioned(kv);
  }

  async #readMany(ids: string[]): Promise<Versioned[]> {
    const found: Versioned[] = [];
    for (let i = 0; i < ids.length; i += READ_BATCH) {
      const reads = ids.slice(i, i + READ_BATCH).map((id) => etcdOp.get(this.#k("s", id)));
      for (const kvs of rangeResults(await etcdTxn(this.#etcd.client, [], reads))) {
        if (kvs[0] !== undefined) found.push(versioned(kvs[0]));
      }
    }
    return found;
  }

  /** Puts of the record and every index entry it owns, on `lease`. */
  #keysOf(session: StoredSession, lease: string): EtcdOp[] {
    const ops = [etcdOp.put(this.#k("s", session.id), JSON.stringify(session), lease)];
    if (session.connectionId !== "") {
      ops.push(etcdOp.put(this.#k("c", session.connectionId), session.id, lease));
    }
    for (const hash of [session.tokenHash, ...session.rotatedTokenHashes]) {
      ops.push(etcdOp.put(this.#k("t", hash), session.id, lease));
    }
    if (session.state !== "terminated") {
      ops.push(etcdOp.put(this.#k("u", session.userId, session.id), "", lease));
    }
    ops.push(etcdOp.put(this.#expiryKey(session), session.id, lease));
    return ops;
  }

  /** Delete the connection index entry if it still names `session` (guarded). */
  async #connectionRelease(session: StoredSession, compare: EtcdCompare[]): Promise<EtcdOp[]> {
    const key = this.#k("c", session.connectionId);
    const kv = (await this.#etcd.client.get(key).exec()).kvs[0];
    if (kv === undefined || kv.value.toString() !== session.id) return [];
    compare.push(etcdCompare.modRevision(key, kv.mod_revision));
    return [etcdOp.delete(key)];
  }

  /** Deletes of a session and all its index entries (the connection entry only if its own). */
  async #removalOps(session: StoredSession, compare: EtcdCompare[] = []): Promise<EtcdOp[]> {
    const ops = [
      etcdOp.delete(this.#k("s", session.id)),
      etcdOp.delete(this.#k("u", session.userId, session.id)),
      etcdOp.delete(this.#expiryKey(session)),
    ];
    for (const hash of [session.tokenHash, ...session.rotatedTokenHashes]) {
      ops.push(etcdOp.delete(this.#k("t", hash)));
    }
    if (session.connectionId !== "") ops.push(...(await this.#connectionRelease(session, compare)));
    return ops;
  }

  /** Atomically remove session `id` with all its entries if `predicate` holds. */
  async #removeWhere(
    id: string,
    predicate: (session: StoredSession) => boolean,
  ): Promise<StoredSession | null> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const found = await this.#read(id);
      if (found === null || !predicate(found.session)) return null;
      const compare = [etcdCompare.modRevision(this.#k("s", id), found.modRevision)];
      const ops = await this.#removalOps(found.session, compare);
      const result = await etcdTxn(this.#etcd.client, compare, ops);
      if (result.succeeded) return found.session;
    }
    throw new AppError("ABORTED", `Too much contention removing session ${id}; retry`);
  }

  /**
   * A lease that outlives `expiresAt` (by the caller's clock) by at most ~2 s. Sessions
   * expiring within the same second share one lease, so a burst of logins or heartbeats costs
   * one lease grant, not one each; leases are never revoked (a removed session's keys are
   * deleted, its lease just runs out).
   */
  #leaseFor(expiresAt: number, now: number): Promise<string> {
    const real = performance.now();
    const bucket = Math.ceil((real + Math.max(0, expiresAt - now)) / 1000);
    for (const [key] of this.#leases) if (key * 1000 < real) this.#leases.delete(key);
    let lease = this.#leases.get(bucket);
    if (lease === undefined) {
      lease = grantLease(this.#etcd.client, (bucket * 1000 - real) / 1000 + 1);
      lease.catch(() => this.#leases.delete(bucket));
      this.#leases.set(bucket, lease);
    }
    return lease;
  }

  /** Run a write transaction on `lease`; null when the lease vanished (retry with a new one). */
  async #txn(compare: EtcdCompare[], ops: EtcdOp[], lease: string) {
    try {
      return await etcdTxn(this.#etcd.client, compare, ops);
    } catch (error) {
      if (!/lease not found/i.test(String(error))) throw error;
      for (const [key, cached] of this.#leases) {
        if (await cached.catch(() => null) === lease) this.#leases.delete(key);
      }
      return null;
    }
  }

  /** Matching sessions with ids after `after`, in id order. */
  async *#scan(
    query: SessionQuery,
    after: string | undefined,
    now: number,
  ): AsyncGenerator<StoredSession> {
    if (query.userId !== undefined && query.state !== "terminated") {
      const prefix = this.#k("u", query.userId) + "/";
      const keys = await this.#etcd.client.getAll().prefix(prefix).keys();
      const ids = keys.map((key) => decodeURIComponent(lastPart(key)))
        .filter((id) => after === undefined || id > after).sort();
      for (const found of await this.#readMany(ids)) {
        if (matchesQuery(found.session, query, now)) yield found.session;
      }
      return;
    }
    const prefix = this.#k("s") + "/";
    let start = after === undefined ? prefix : this.#k("s", after) + "\u0000";
    const end = prefixEnd(prefix);
    for (;;) {
      const response = await this.#etcd.client.kv.range({
        key: Buffer.from(start),
        range_end: end,
        limit: SCAN_BATCH,
      });
      for (const kv of response.kvs) {
        const session = JSON.parse(kv.value.toString()) as StoredSession;
        if (matchesQuery(session, query, now)) yield session;
      }
      if (!response.more || response.kvs.length === 0) return;
      start = response.kvs.at(-1)!.key.toString() + "\u0000";
    }
  }
}

function versioned(kv: { value: Buffer; mod_revision: string; lease: string }): Versioned {
  return {
    session: JSON.parse(kv.value.toString()) as StoredSession,
    modRevision: kv.mod_revision,
    lease: String(kv.lease),
  };
}

function lastPart(key: string): string {
  return key.slice(key.lastIndexOf("/") + 1);
}
