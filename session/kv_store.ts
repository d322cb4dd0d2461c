/**
 * The default {@link SessionStore}: Deno KV (SQLite) in a file under the data directory, so
 * sessions survive restarts.
 *
 * Keys (all under this file's KV):
 * - `["s", id]` → the {@link StoredSession}
 * - `["u", userId]` → ids of the user's sessions that are not terminated (bounded by the
 *   per-user limit; one key so the limit is enforced with one versionstamp check)
 * - `["c", connectionId]` → session id
 * - `["t", tokenHash]` → session id (current and rotated tokens)
 * - `["x", expiresAt, id]` → session id (the sweeper's expiry index)
 *
 * Every change of a session and its index entries is one `kv.atomic()` guarded by
 * versionstamp checks, retried on conflict. KV's own `expireIn` is not used: it is lazy
 * (REFERENCES.md) and would drop records behind the indexes' back. Instead every read checks
 * the stored `expiresAt` and {@link KvSessionStore.sweep} deletes expired sessions with all
 * their index entries. Concurrent writes share commits through a group committer. The user
 * lists are also kept in memory (`_user_lists.ts`), so a create needs no read before its write,
 * and recently committed session records are cached (`_session_cache.ts`) for gets and updates.
 *
 * @example
 * ```ts
 * await using store = await KvSessionStore.open(`${dataDir}/session.kv`);
 * await store.insert(record, { now: Date.now(), maxPerUser: 10, onLimit: "evict_oldest" });
 * ```
 * @module
 */
import { AppError } from "../kernel/mod.ts";
import { GroupCommitter, type KvWrite } from "./_group_commit.ts";
import { ReadBatcher } from "./_read_batch.ts";
import { UserLists } from "./_user_lists.ts";
import { SessionCache } from "./_session_cache.ts";
import { cloneStored, type StoredSession } from "./model.ts";
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
const GET_MANY_LIMIT = 10;

/** Point reads, direct or batched. */
interface KvReads {
  get<T>(key: Deno.KvKey): Promise<Deno.KvEntryMaybe<T>>;
  getMany<T>(keys: Deno.KvKey[]): Promise<Deno.KvEntryMaybe<T>[]>;
}

/** Options for {@link KvSessionStore.open}. */
export interface KvSessionStoreOptions {
  /** Merge concurrent writes into shared commits and reads into shared `getMany` calls
   * (default true). */
  groupCommit?: boolean;
}

/** Sessions in Deno KV. */
export class KvSessionStore implements SessionStore, AsyncDisposable {
  #kv: Deno.Kv;
  #committer: GroupCommitter;
  #reads: KvReads;
  #users: UserLists;
  #sessions = new SessionCache();
  #closed = false;

  private constructor(kv: Deno.Kv, users: UserLists, options: KvSessionStoreOptions) {
    this.#kv = kv;
    this.#users = users;
    const batched = options.groupCommit ?? true;
    this.#committer = new GroupCommitter(kv, { enabled: batched });
    this.#reads = batched ? new ReadBatcher(kv) : {
      get: <T>(key: Deno.KvKey) => kv.get<T>(key),
      getMany: <T>(keys: Deno.KvKey[]) => kv.getMany<T[]>(keys) as Promise<Deno.KvEntryMaybe<T>[]>,
    };
  }

  /**
   * Open (or create) the KV file at `path`.
   * @throws {Deno.errors.NotFound} when the directory does not exist
   */
  static async open(path: string, options: KvSessionStoreOptions = {}): Promise<KvSessionStore> {
    const kv = await Deno.openKv(path);
    try {
      return new KvSessionStore(kv, await UserLists.load(kv), options);
    } catch (error) {
      kv.close();
      throw error;
    }
  }

  /** Group-commit counters: atomic commits issued and the writes they carried. */
  stats(): { commits: number; writes: number } {
    return this.#committer.stats();
  }

  /** See {@link SessionStore.insert}. */
  async insert(session: StoredSession, options: InsertOptions): Promise<InsertResult> {
    this.#assertOpen();
    const { now } = options;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      // First attempt: nothing to read for a fresh id (the null check below catches a clash,
      // and the retry reads it) nor, usually, for the user list (kept in memory).
      const firstTry = attempt === 0;
      const [idEntry, userEntry, connEntry] = await Promise.all([
        firstTry ? null : this.#reads.get(["s", session.id]),
        (firstTry ? this.#users.get(session.userId) : undefined) ??
          this.#reads.get<string[]>(["u", session.userId]),
        session.connectionId === "" ? null : this.#reads.get<string>(["c", session.connectionId]),
      ]);
      if (idEntry !== null && idEntry.versionstamp !== null) {
        throw new AppError("ALREADY_EXISTS", `Session ${session.id} already exists`);
      }
      const write = newWrite();
      write.checks.push({ key: ["s", session.id], versionstamp: null });
      write.checks.push({ key: userEntry.key, versionstamp: userEntry.versionstamp });
      if (connEntry !== null) {
        const holder = await this.#holder(connEntry, now);
        if (holder !== null) {
          throw new AppError("ALREADY_EXISTS", "Invalid connection_id: in use by another session");
        }
        write.checks.push({ key: connEntry.key, versionstamp: connEntry.versionstamp });
      }
      const ids = userEntry.value ?? [];
      const live = ids.length >= options.maxPerUser ? await this.#liveEntries(ids, now) : null;
      const evicted: string[] = [];
      let kept = ids;
      if (live !== null) {
        while (live.length >= options.maxPerUser) {
          if (options.onLimit === "refuse") {
            throw new AppError(
              "RESOURCE_EXHAUSTED",
              `User ${session.userId} already has ${live.length} sessions (limit ${options.maxPerUser})`,
            );
          }
          const oldest = live.shift()!;
          await this.#addRemoval(write, oldest);
          evicted.push(oldest.value.id);
        }
        kept = live.map((entry) => entry.value.id);
      }
      write.mutations.push({
        type: "set",
        key: ["u", session.userId],
        value: [...kept, session.id],
      });
      addIndexes(write, session);
      write.mutations.push({ type: "set", key: ["s", session.id], value: session });
      write.bytes += estimateBytes(session) + 40 * kept.length;
      if (await this.#commit(write)) return { evicted };
    }
    throw new AppError("ABORTED", "Too much contention creating the session; retry");
  }

  /** See {@link SessionStore.get}. */
  async get(id: string, now: number): Promise<StoredSession | null> {
    this.#assertOpen();
    const entry = await this.#readSession(id);
    return liveValue(entry.value, now);
  }

  /** See {@link SessionStore.getByConnectionId}. */
  async getByConnectionId(connectionId: string, now: number): Promise<StoredSession | null> {
    this.#assertOpen();
    const index = await this.#reads.get<string>(["c", connectionId]);
    if (index.value === null) return null;
    const session = await this.get(index.value, now);
    return session?.connectionId === connectionId ? session : null;
  }

  /** See {@link SessionStore.getByTokenHash}. */
  async getByTokenHash(tokenHash: string, now: number): Promise<StoredSession | null> {
    this.#assertOpen();
    const index = await this.#reads.get<string>(["t", tokenHash]);
    if (index.value === null) return null;
    return await this.get(index.value, now);
  }

  /** See {@link SessionStore.update}. */
  async update(
    id: string,
    now: number,
    mutate: (current: StoredSession) => StoredSession,
  ): Promise<StoredSession> {
    this.#assertOpen();
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = await this.#readSession(id);
      const current = liveValue(entry.value, now);
      if (current === null) throw new AppError("NOT_FOUND", `Session ${id} not found`);
      const next = mutate(cloneStored(current));
      const write = newWrite();
      write.checks.push({ key: entry.key, versionstamp: entry.versionstamp });
      if (next.connectionId !== current.connectionId) {
        if (current.connectionId !== "") await this.#addConnectionRelease(write, current);
        if (next.connectionId !== "") {
          const connEntry = await this.#reads.get<string>(["c", next.connectionId]);
          if (await this.#holder(connEntry, now) !== null) {
            throw new AppError(
              "ALREADY_EXISTS",
              "Invalid connection_id: in use by another session",
            );
          }
          write.checks.push({ key: connEntry.key, versionstamp: connEntry.versionstamp });
          write.mutations.push({ type: "set", key: connEntry.key, value: id });
        }
      }
      const before = new Set([current.tokenHash, ...current.rotatedTokenHashes]);
      const after = new Set([next.tokenHash, ...next.rotatedTokenHashes]);
      for (const hash of before) {
        if (!after.has(hash)) write.mutations.push({ type: "delete", key: ["t", hash] });
      }
      for (const hash of after) {
        if (!before.has(hash)) write.mutations.push({ type: "set", key: ["t", hash], value: id });
      }
      if (next.expiresAt !== current.expiresAt) {
        write.mutations.push({ type: "delete", key: ["x", current.expiresAt, id] });
        write.mutations.push({ type: "set", key: ["x", next.expiresAt, id], value: id });
      }
      if (next.state === "terminated" && current.state !== "terminated") {
        await this.#addUserRemoval(write, current);
      }
      write.mutations.push({ type: "set", key: ["s", id], value: next });
      write.bytes += estimateBytes(next);
      if (await this.#commit(write)) return next;
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

  /** See {@link SessionStore.sweep}. */
  async sweep(now: number, limit = 1000): Promise<number> {
    this.#assertOpen();
    const due: string[] = [];
    const stale: Deno.KvKey[] = [];
    const iterator = this.#kv.list<string>({ start: ["x"], end: ["x", now + 1] }, { limit });
    for await (const entry of iterator) {
      due.push(entry.value);
      stale.push(entry.key);
    }
    let removed = 0;
    for (let i = 0; i < due.length; i += 16) {
      const chunk = due.slice(i, i + 16);
      const results = await Promise.all(
        chunk.map((id) => this.#removeWhere(id, (session) => session.expiresAt <= now)),
      );
      removed += results.filter((session) => session !== null).length;
    }
    // Removals delete their expiry entries; this only drops orphans so they cannot pile up.
    for (let i = 0; i < stale.length; i += 100) {
      const atomic = this.#kv.atomic();
      for (const key of stale.slice(i, i + 100)) atomic.delete(key);
      await atomic.commit();
    }
    return removed;
  }

  /** Wait for queued writes, then close the KV file. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#committer.drain();
    this.#kv.close();
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Commit through the group committer, keeping the in-memory user lists current. */
  async #commit(write: KvWrite): Promise<boolean> {
    const versionstamp = await this.#committer.commit(write);
    if (versionstamp === null) {
      this.#users.failed(write.checks);
      this.#sessions.failed(write.checks, write.mutations);
      return false;
    }
    this.#users.committed(write.mutations, versionstamp);
    this.#sessions.committed(write.mutations, versionstamp);
    return true;
  }

  /** A session record (a private copy): from the cache of recent commits, else from KV. */
  async #readSession(id: string): Promise<Deno.KvEntryMaybe<StoredSession>> {
    return this.#sessions.get(id) ?? await this.#reads.get<StoredSession>(["s", id]);
  }

  #assertOpen(): void {
    if (this.#closed) throw new AppError("UNAVAILABLE", "Session store is closed");
  }

  /** The live session an index entry points to, or null. */
  async #holder(index: Deno.KvEntryMaybe<string>, now: number): Promise<StoredSession | null> {
    if (index.value === null) return null;
    const holder = await this.#reads.get<StoredSession>(["s", index.value]);
    return holder.value !== null && isLive(holder.value, now) ? holder.value : null;
  }

  /** Entries of the live sessions among `ids`, in id order. */
  async #liveEntries(ids: string[], now: number): Promise<Deno.KvEntry<StoredSession>[]> {
    const live: Deno.KvEntry<StoredSession>[] = [];
    for (let i = 0; i < ids.length; i += GET_MANY_LIMIT) {
      const keys = ids.slice(i, i + GET_MANY_LIMIT).map((id) => ["s", id]);
      for (const entry of await this.#reads.getMany<StoredSession>(keys)) {
        if (entry.value !== null && isLive(entry.value, now)) {
          live.push(entry as Deno.KvEntry<StoredSession>);
        }
      }
    }
    return live.sort((a, b) => (a.value.id < b.value.id ? -1 : 1));
  }

  /** Add the removal of a session record and its own index entries (not the user list). */
  async #addRemoval(write: KvWrite, entry: Deno.KvEntry<StoredSession>): Promise<void> {
    const session = entry.value;
    write.checks.push({ key: entry.key, versionstamp: entry.versionstamp });
    write.mutations.push({ type: "delete", key: entry.key });
    write.mutations.push({ type: "delete", key: ["x", session.expiresAt, session.id] });
    for (const hash of [session.tokenHash, ...session.rotatedTokenHashes]) {
      write.mutations.push({ type: "delete", key: ["t", hash] });
    }
    if (session.connectionId !== "") await this.#addConnectionRelease(write, session);
  }

  /** Delete the connection index entry if it still points to `session`. */
  async #addConnectionRelease(write: KvWrite, session: StoredSession): Promise<void> {
    const index = await this.#reads.get<string>(["c", session.connectionId]);
    if (index.value !== session.id) return;
    write.checks.push({ key: index.key, versionstamp: index.versionstamp });
    write.mutations.push({ type: "delete", key: index.key });
  }

  /** Remove `session` from its user's list. */
  async #addUserRemoval(write: KvWrite, session: StoredSession): Promise<void> {
    const entry = this.#users.get(session.userId) ??
      await this.#reads.get<string[]>(["u", session.userId]);
    write.checks.push({ key: entry.key, versionstamp: entry.versionstamp });
    const rest = (entry.value ?? []).filter((id) => id !== session.id);
    if (rest.length === 0) write.mutations.push({ type: "delete", key: entry.key });
    else write.mutations.push({ type: "set", key: entry.key, value: rest });
    write.bytes += 40 * rest.length;
  }

  /** Atomically remove session `id` with all its entries if `predicate` holds; the removed one. */
  async #removeWhere(
    id: string,
    predicate: (session: StoredSession) => boolean,
  ): Promise<StoredSession | null> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = await this.#readSession(id);
      if (entry.value === null || !predicate(entry.value)) return null;
      const write = newWrite();
      await this.#addRemoval(write, entry as Deno.KvEntry<StoredSession>);
      await this.#addUserRemoval(write, entry.value);
      if (await this.#commit(write)) return entry.value;
    }
    throw new AppError("ABORTED", `Too much contention removing session ${id}; retry`);
  }

  /** Matching sessions with ids after `after`, in id order. */
  async *#scan(
    query: SessionQuery,
    after: string | undefined,
    now: number,
  ): AsyncGenerator<StoredSession> {
    if (query.userId !== undefined && query.state !== "terminated") {
      const user = await this.#reads.get<string[]>(["u", query.userId]);
      const ids = (user.value ?? []).filter((id) => after === undefined || id > after).sort();
      for (let i = 0; i < ids.length; i += GET_MANY_LIMIT) {
        const keys = ids.slice(i, i + GET_MANY_LIMIT).map((id) => ["s", id]);
        for (const entry of await this.#reads.getMany<StoredSession>(keys)) {
          if (entry.value !== null && matchesQuery(entry.value, query, now)) yield entry.value;
        }
      }
      return;
    }
    const selector: Deno.KvListSelector = after === undefined
      ? { prefix: ["s"] }
      : { prefix: ["s"], start: ["s", after] };
    for await (const entry of this.#kv.list<StoredSession>(selector, { batchSize: 500 })) {
      if (entry.value.id === after) continue;
      if (matchesQuery(entry.value, query, now)) yield entry.value;
    }
  }
}

function newWrite(): KvWrite {
  return { checks: [], mutations: [], bytes: 0 };
}

function liveValue(value: StoredSession | null, now: number): StoredSession | null {
  return value !== null && value.expiresAt > now ? value : null;
}

/** Index entries of a brand-new session (the connection entry is checked by the caller). */
function addIndexes(write: KvWrite, session: StoredSession): void {
  if (session.connectionId !== "") {
    write.mutations.push({ type: "set", key: ["c", session.connectionId], value: session.id });
  }
  for (const hash of [session.tokenHash, ...session.rotatedTokenHashes]) {
    write.mutations.push({ type: "set", key: ["t", hash], value: session.id });
  }
  write.mutations.push({
    type: "set",
    key: ["x", session.expiresAt, session.id],
    value: session.id,
  });
}

function estimateBytes(session: StoredSession): number {
  let bytes = 512 + 72 * (1 + session.rotatedTokenHashes.length);
  for (const [key, value] of Object.entries(session.metadata)) bytes += key.length + value.length;
  return bytes * 2;
}
