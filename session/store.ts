/**
 * The storage contract behind {@link SessionManager}. Every implementation keeps its
 * secondary indexes (connection id, user id, token hashes, expiry) consistent with the
 * session records atomically, and passes the one shared suite in `_store_suite.ts`.
 *
 * Expiry: every read takes `now` and treats a session whose `expiresAt <= now` as absent,
 * so correctness never depends on a background job. `sweep(now)` deletes such sessions with
 * all their index entries. Every write carries the session's `expiresAt`, so a backend with
 * native leases (etcd) can attach one per session instead of sweeping; such a backend may
 * return 0 from `sweep`.
 *
 * @example
 * ```ts
 * const store: SessionStore = new MemorySessionStore();
 * await store.insert(record, { now, maxPerUser: 10, onLimit: "evict_oldest" });
 * const found = await store.get(record.id, now);
 * ```
 * @module
 */
import type { SessionState, StoredSession } from "./model.ts";

/** What to do when a user already has the maximum number of live sessions. */
export type UserLimitPolicy =
  /** Terminate and remove the user's oldest live session to make room (the default). */
  | "evict_oldest"
  /** Refuse the new session with RESOURCE_EXHAUSTED. */
  | "refuse";

/** Options for {@link SessionStore.insert}. */
export interface InsertOptions {
  /** Current time, epoch ms. */
  now: number;
  /** Maximum live (active or idle, unexpired) sessions per user, ≥ 1. */
  maxPerUser: number;
  /** What to do at the limit. */
  onLimit: UserLimitPolicy;
}

/** Result of {@link SessionStore.insert}. */
export interface InsertResult {
  /** Ids of sessions removed to respect the per-user limit (oldest first). */
  evicted: string[];
}

/** Filters for listing and counting; all optional. */
export interface SessionQuery {
  /** Only this user's sessions. */
  userId?: string | undefined;
  /** Only this state; when absent, any live state (active or idle). */
  state?: SessionState | undefined;
  /** Created at or after this time (epoch ms). */
  createdAfter?: number | undefined;
  /** Created before this time (epoch ms). */
  createdBefore?: number | undefined;
}

/** One page of a listing. */
export interface SessionPage {
  /** Matching sessions in id (creation) order. */
  sessions: StoredSession[];
  /** Id of the last session returned when more may follow, else null. */
  nextAfter: string | null;
}

/** Where a page starts and how long it is. */
export interface PageRequest {
  /** Return only sessions with an id greater than this one. */
  after?: string | undefined;
  /** Maximum sessions on the page, ≥ 1. */
  limit: number;
}

/**
 * Storage for sessions. Methods reject with `AppError` for domain failures:
 * ALREADY_EXISTS (id taken, or the connection id belongs to another live session),
 * RESOURCE_EXHAUSTED (per-user limit with policy "refuse"), NOT_FOUND (update of an absent or
 * expired session), ABORTED (an update lost too many optimistic-concurrency races).
 */
export interface SessionStore {
  /** Insert a new session with its indexes; enforces the per-user limit atomically. */
  insert(session: StoredSession, options: InsertOptions): Promise<InsertResult>;
  /** The session with this id, or null when absent or expired at `now`. */
  get(id: string, now: number): Promise<StoredSession | null>;
  /** The session holding this connection id, or null. */
  getByConnectionId(connectionId: string, now: number): Promise<StoredSession | null>;
  /**
   * The session whose current *or rotated* token has this hash, or null. Callers compare
   * `tokenHash` to tell the two apart (reuse detection).
   */
  getByTokenHash(tokenHash: string, now: number): Promise<StoredSession | null>;
  /**
   * Read-modify-write one session atomically. `mutate` receives a private copy and returns the
   * new record (it may be called again after a concurrent write; it may throw to abort).
   * Changes of `connectionId`, `tokenHash`, `rotatedTokenHashes`, `expiresAt` and a move to
   * "terminated" update the indexes in the same atomic write. `id`, `userId` and `createdAt`
   * must not change.
   */
  update(
    id: string,
    now: number,
    mutate: (current: StoredSession) => StoredSession,
  ): Promise<StoredSession>;
  /** Remove a session and its index entries; false when it was absent or expired. */
  delete(id: string, now: number): Promise<boolean>;
  /** A page of matching sessions in id order. */
  list(query: SessionQuery, page: PageRequest, now: number): Promise<SessionPage>;
  /** How many sessions match. */
  count(query: SessionQuery, now: number): Promise<number>;
  /** Delete up to `limit` sessions expired at `now` with their indexes; returns how many. */
  sweep(now: number, limit?: number): Promise<number>;
  /** Release the backend (close files). Idempotent. */
  close(): Promise<void>;
}

/** True when `session` is live (active or idle) at `now`. */
export function isLive(session: StoredSession, now: number): boolean {
  return session.expiresAt > now && (session.state === "active" || session.state === "idle");
}

/** True when `session` matches `query` at `now` (expired sessions never match). */
export function matchesQuery(session: StoredSession, query: SessionQuery, now: number): boolean {
  if (session.expiresAt <= now) return false;
  if (query.state === undefined) {
    if (session.state !== "active" && session.state !== "idle") return false;
  } else if (session.state !== query.state) {
    return false;
  }
  if (query.userId !== undefined && session.userId !== query.userId) return false;
  if (query.createdAfter !== undefined && session.createdAt < query.createdAfter) return false;
  if (query.createdBefore !== undefined && session.createdAt >= query.createdBefore) return false;
  return true;
}
