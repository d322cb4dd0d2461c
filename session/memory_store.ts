/**
 * An in-memory {@link SessionStore} for tests and ephemeral runs. Every method does its
 * reads and writes without awaiting in between, so each is atomic on the event loop.
 *
 * @example
 * ```ts
 * const store = new MemorySessionStore();
 * await store.insert(record, { now: Date.now(), maxPerUser: 10, onLimit: "refuse" });
 * ```
 * @module
 */
import { AppError } from "../kernel/mod.ts";
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

/** Sessions in process memory; lost on exit. */
export class MemorySessionStore implements SessionStore {
  #sessions = new Map<string, StoredSession>();
  #byConnection = new Map<string, string>();
  #byToken = new Map<string, string>();
  #byUser = new Map<string, string[]>();
  #closed = false;

  /** Insert a session; see {@link SessionStore.insert}. */
  insert(session: StoredSession, options: InsertOptions): Promise<InsertResult> {
    this.#open();
    const { now } = options;
    if (this.#sessions.has(session.id)) {
      return Promise.reject(new AppError("ALREADY_EXISTS", `Session ${session.id} already exists`));
    }
    if (session.connectionId !== "") {
      const holder = this.#liveHolder(session.connectionId, now);
      if (holder !== null) {
        return Promise.reject(
          new AppError("ALREADY_EXISTS", "Invalid connection_id: in use by another session"),
        );
      }
    }
    const live = (this.#byUser.get(session.userId) ?? []).filter((id) => {
      const other = this.#sessions.get(id);
      return other !== undefined && isLive(other, now);
    });
    const evicted: string[] = [];
    while (live.length >= options.maxPerUser) {
      if (options.onLimit === "refuse") {
        return Promise.reject(
          new AppError(
            "RESOURCE_EXHAUSTED",
            `User ${session.userId} already has ${live.length} sessions (limit ${options.maxPerUser})`,
          ),
        );
      }
      const oldest = live.shift()!;
      this.#remove(oldest);
      evicted.push(oldest);
    }
    live.push(session.id);
    this.#byUser.set(session.userId, live);
    this.#write(cloneStored(session), null);
    return Promise.resolve({ evicted });
  }

  /** See {@link SessionStore.get}. */
  get(id: string, now: number): Promise<StoredSession | null> {
    this.#open();
    return Promise.resolve(this.#read(id, now));
  }

  /** See {@link SessionStore.getByConnectionId}. */
  getByConnectionId(connectionId: string, now: number): Promise<StoredSession | null> {
    this.#open();
    const id = this.#byConnection.get(connectionId);
    return Promise.resolve(id === undefined ? null : this.#read(id, now));
  }

  /** See {@link SessionStore.getByTokenHash}. */
  getByTokenHash(tokenHash: string, now: number): Promise<StoredSession | null> {
    this.#open();
    const id = this.#byToken.get(tokenHash);
    return Promise.resolve(id === undefined ? null : this.#read(id, now));
  }

  /** See {@link SessionStore.update}. */
  update(
    id: string,
    now: number,
    mutate: (current: StoredSession) => StoredSession,
  ): Promise<StoredSession> {
    this.#open();
    const current = this.#sessions.get(id);
    if (current === undefined || current.expiresAt <= now) {
      return Promise.reject(new AppError("NOT_FOUND", `Session ${id} not found`));
    }
    let next: StoredSession;
    try {
      next = cloneStored(mutate(cloneStored(current)));
    } catch (error) {
      return Promise.reject(error);
    }
    if (next.connectionId !== "" && next.connectionId !== current.connectionId) {
      const holder = this.#liveHolder(next.connectionId, now);
      if (holder !== null && holder !== id) {
        return Promise.reject(
          new AppError("ALREADY_EXISTS", "Invalid connection_id: in use by another session"),
        );
      }
    }
    if (next.state === "terminated" && current.state !== "terminated") {
      const ids = this.#byUser.get(current.userId) ?? [];
      this.#byUser.set(current.userId, ids.filter((other) => other !== id));
    }
    this.#write(next, current);
    return Promise.resolve(cloneStored(next));
  }

  /** See {@link SessionStore.delete}. */
  delete(id: string, now: number): Promise<boolean> {
    this.#open();
    const current = this.#sessions.get(id);
    if (current === undefined) return Promise.resolve(false);
    this.#remove(id);
    return Promise.resolve(current.expiresAt > now);
  }

  /** See {@link SessionStore.list}. */
  list(query: SessionQuery, page: PageRequest, now: number): Promise<SessionPage> {
    this.#open();
    const ids = [...this.#sessions.keys()].filter((id) =>
      page.after === undefined || id > page.after
    )
      .sort();
    const sessions: StoredSession[] = [];
    let more = false;
    for (const id of ids) {
      const session = this.#sessions.get(id)!;
      if (!matchesQuery(session, query, now)) continue;
      if (sessions.length === page.limit) {
        more = true;
        break;
      }
      sessions.push(cloneStored(session));
    }
    return Promise.resolve({ sessions, nextAfter: more ? sessions.at(-1)!.id : null });
  }

  /** See {@link SessionStore.count}. */
  count(query: SessionQuery, now: number): Promise<number> {
    this.#open();
    let count = 0;
    for (const session of this.#sessions.values()) {
      if (matchesQuery(session, query, now)) count++;
    }
    return Promise.resolve(count);
  }

  /** See {@link SessionStore.sweep}. */
  sweep(now: number, limit = 1000): Promise<number> {
    this.#open();
    let removed = 0;
    for (const [id, session] of this.#sessions) {
      if (removed >= limit) break;
      if (session.expiresAt > now) continue;
      this.#remove(id);
      removed++;
    }
    return Promise.resolve(removed);
  }

  /** Drop everything. */
  close(): Promise<void> {
    this.#closed = true;
    this.#sessions.clear();
    this.#byConnection.clear();
    this.#byToken.clear();
    this.#byUser.clear();
    return Promise.resolve();
  }

  #open(): void {
    if (this.#closed) throw new AppError("UNAVAILABLE", "Session store is closed");
  }

  #read(id: string, now: number): StoredSession | null {
    const session = this.#sessions.get(id);
    if (session === undefined || session.expiresAt <= now) return null;
    return cloneStored(session);
  }

  /** The id of the live session holding `connectionId`, or null. */
  #liveHolder(connectionId: string, now: number): string | null {
    const id = this.#byConnection.get(connectionId);
    if (id === undefined) return null;
    const holder = this.#sessions.get(id);
    return holder !== undefined && isLive(holder, now) ? id : null;
  }

  #write(next: StoredSession, previous: StoredSession | null): void {
    if (previous !== null) this.#unindex(previous);
    this.#sessions.set(next.id, next);
    if (next.connectionId !== "") this.#byConnection.set(next.connectionId, next.id);
    this.#byToken.set(next.tokenHash, next.id);
    for (const hash of next.rotatedTokenHashes) this.#byToken.set(hash, next.id);
  }

  #unindex(session: StoredSession): void {
    if (this.#byConnection.get(session.connectionId) === session.id) {
      this.#byConnection.delete(session.connectionId);
    }
    for (const hash of [session.tokenHash, ...session.rotatedTokenHashes]) {
      if (this.#byToken.get(hash) === session.id) this.#byToken.delete(hash);
    }
  }

  #remove(id: string): void {
    const session = this.#sessions.get(id);
    if (session === undefined) return;
    this.#unindex(session);
    this.#sessions.delete(id);
    const ids = this.#byUser.get(session.userId);
    if (ids !== undefined) {
      const rest = ids.filter((other) => other !== id);
      if (rest.length === 0) this.#byUser.delete(session.userId);
      else this.#byUser.set(session.userId, rest);
    }
  }
}
