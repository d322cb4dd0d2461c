/**
 * The session manager: validation, tokens, TTLs, limits and the state machine documented in
 * `model.ts`, over any {@link SessionStore}. It reads time only from its injected clock.
 *
 * Policies:
 * - Tokens: 32 random bytes, base64url (43 characters), returned by `create` and
 *   `rotateToken` only; the store keeps their SHA-256 hashes. `getByToken` matches only the
 *   current token. `rotateToken` replaces the current token; presenting a token that was
 *   already rotated away (refresh-token reuse, OAuth security BCP) terminates the session.
 * - Per-user limit: `maxSessionsPerUser` live sessions. The default policy `"evict_oldest"`
 *   removes the user's oldest session to admit the new one (a user opening a new tab is never
 *   locked out by a forgotten one); `"refuse"` answers RESOURCE_EXHAUSTED instead.
 * - Expiry: `expiresAt = now + ttl`. A heartbeat moves it to `now + ttl` (its own TTL when
 *   given, else the session's). Updates and rotation do not extend it.
 *
 * Errors (AppError): NOT_FOUND (unknown or expired session or token), FAILED_PRECONDITION
 * (terminated session), RESOURCE_EXHAUSTED (per-user limit with "refuse"), UNAUTHENTICATED
 * (rotated token presented again), ALREADY_EXISTS (connection id held by another session).
 * Caller mistakes throw TypeError/RangeError naming the proto field.
 *
 * @example
 * ```ts
 * const manager = new SessionManager(new MemorySessionStore());
 * const { session, token } = await manager.create({ userId: "u1", ttlSeconds: 60 });
 * await manager.heartbeat(session.id);
 * const same = await manager.getByToken(token);
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { Buffer } from "node:buffer";
import { AppError, type Clock, newId, systemClock } from "../kernel/mod.ts";
import {
  emptyStats,
  MAX_ROTATED_TOKENS,
  type Session,
  type SessionState,
  type SessionStats,
  type StoredSession,
  toPublicSession,
} from "./model.ts";
import type { SessionQuery, SessionStore, UserLimitPolicy } from "./store.ts";
import {
  integerIn,
  type MetadataLimits,
  optionalId,
  optionalIp,
  optionalText,
  requireId,
  requireText,
  validMetadata,
  validStats,
} from "./_validate.ts";

export type { MetadataLimits } from "./_validate.ts";

/** Options for {@link SessionManager}. */
export interface SessionManagerOptions {
  /** Time source (default: the system wall clock). */
  clock?: Clock;
  /** TTL when a create does not name one, seconds (default 1800). */
  defaultTtlSeconds?: number;
  /** Largest TTL a caller may ask for, seconds (default 86400). */
  maxTtlSeconds?: number;
  /** Live sessions per user (default 10). */
  maxSessionsPerUser?: number;
  /** What happens at the per-user limit (default "evict_oldest"). */
  userLimitPolicy?: UserLimitPolicy;
  /** Metadata limits (default 32 entries, 128-byte keys, 1 KiB values, 8 KiB total). */
  metadataLimits?: Partial<MetadataLimits>;
}

/** Input of {@link SessionManager.create}. */
export interface CreateSessionInput {
  /** The owning user (required). */
  userId: string;
  /** Quantum connection id (UUIDv7), optional. */
  connectionId?: string;
  /** Client IP address, optional. */
  clientIp?: string;
  /** Client port 0..65535, optional. */
  clientPort?: number;
  /** Serving gateway address, optional. */
  serverAddress?: string;
  /** TTL in seconds; 0 or absent means the default. */
  ttlSeconds?: number;
  /** Initial metadata. */
  metadata?: Record<string, string>;
}

/** A partial update: only the fields present are changed. */
export interface SessionUpdate {
  /** New state: "active" or "idle" (delete to terminate). */
  state?: SessionState;
  /** Replacement metadata. */
  metadata?: Record<string, string>;
  /** Replacement counters. */
  stats?: SessionStats;
  /** New Quantum connection id, or "" to clear it. */
  connectionId?: string;
  /** New serving gateway address. */
  serverAddress?: string;
}

/** Listing options. */
export interface ListOptions {
  /** 1..1000; 0 or absent means 100. */
  pageSize?: number;
  /** Cursor from a previous page's `nextPageToken`. */
  pageToken?: string;
}

/** One page of {@link SessionManager.list}. */
export interface SessionListPage {
  /** Sessions in id (creation) order. */
  sessions: Session[];
  /** Cursor for the next page; "" on the last page. */
  nextPageToken: string;
  /** Sessions matching the filters across all pages, as counted for the first page. */
  totalCount: number;
}

/** A session and its (new) token. */
export interface SessionWithToken {
  /** The session. */
  session: Session;
  /** The token, shown only this once. */
  token: string;
}

const TOKEN_BYTES = 32;
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;
const DEFAULT_METADATA_LIMITS: MetadataLimits = {
  maxEntries: 32,
  maxKeyBytes: 128,
  maxValueBytes: 1024,
  maxTotalBytes: 8192,
};

/** Session lifecycle over a store. */
export class SessionManager {
  #store: SessionStore;
  #clock: Clock;
  #defaultTtlMs: number;
  #maxTtlSeconds: number;
  #maxPerUser: number;
  #policy: UserLimitPolicy;
  #metadataLimits: MetadataLimits;

  /**
   * @throws {RangeError} when an option is out of range
   */
  constructor(store: SessionStore, options: SessionManagerOptions = {}) {
    this.#store = store;
    this.#clock = options.clock ?? systemClock;
    this.#maxTtlSeconds = integerIn(
      options.maxTtlSeconds ?? 86_400,
      "maxTtlSeconds",
      1,
      31_536_000,
    );
    const defaultTtl = integerIn(
      options.defaultTtlSeconds ?? Math.min(1800, this.#maxTtlSeconds),
      "defaultTtlSeconds",
      1,
      this.#maxTtlSeconds,
    );
    this.#defaultTtlMs = defaultTtl * 1000;
    this.#maxPerUser = integerIn(options.maxSessionsPerUser ?? 10, "maxSessionsPerUser", 1, 1000);
    this.#policy = options.userLimitPolicy ?? "evict_oldest";
    this.#metadataLimits = { ...DEFAULT_METADATA_LIMITS, ...options.metadataLimits };
  }

  /** The store this manager writes to. */
  get store(): SessionStore {
    return this.#store;
  }

  /** Create a session and issue its token (evicting the user's oldest at the limit). */
  async create(input: CreateSessionInput): Promise<SessionWithToken> {
    const userId = requireText(input.userId, "user_id", 256);
    const connectionId = optionalId(input.connectionId, "connection_id");
    const clientIp = optionalIp(input.clientIp, "client_ip");
    const clientPort = integerIn(input.clientPort ?? 0, "client_port", 0, 65_535);
    const serverAddress = optionalText(input.serverAddress, "server_address", 256);
    const ttlMs = this.#ttlMs(input.ttlSeconds, this.#defaultTtlMs);
    const metadata = validMetadata(input.metadata, "metadata", this.#metadataLimits);
    const now = this.#clock.now();
    const token = newToken();
    const record: StoredSession = {
      id: newId(),
      userId,
      connectionId,
      clientIp,
      clientPort,
      serverAddress,
      state: "active",
      createdAt: now,
      lastActiveAt: now,
      expiresAt: now + ttlMs,
      ttlMs,
      metadata,
      stats: emptyStats(),
      tokenHash: hashToken(token),
      rotatedTokenHashes: [],
    };
    await this.#store.insert(record, {
      now,
      maxPerUser: this.#maxPerUser,
      onLimit: this.#policy,
    });
    return { session: toPublicSession(record), token };
  }

  /** The session with this id (terminated ones included, with their state). */
  async get(sessionId: string): Promise<Session> {
    const id = requireId(sessionId, "session_id");
    const found = await this.#store.get(id, this.#clock.now());
    if (found === null) throw notFound(id);
    return toPublicSession(found);
  }

  /** The session holding this Quantum connection id. */
  async getByConnectionId(connectionId: string): Promise<Session> {
    const id = requireId(connectionId, "connection_id");
    const found = await this.#store.getByConnectionId(id, this.#clock.now());
    if (found === null) throw new AppError("NOT_FOUND", `No session for connection ${id}`);
    return toPublicSession(found);
  }

  /**
   * The live session whose *current* token is `token` (the gateway's lookup).
   * Rotated and unknown tokens are NOT_FOUND; a terminated session is FAILED_PRECONDITION.
   */
  async getByToken(token: string): Promise<Session> {
    const hash = hashToken(requireToken(token));
    const found = await this.#store.getByTokenHash(hash, this.#clock.now());
    if (found === null || found.tokenHash !== hash) {
      throw new AppError("NOT_FOUND", "Unknown or expired token");
    }
    if (found.state === "terminated") throw terminated(found.id);
    return toPublicSession(found);
  }

  /** The user's live sessions in creation order. */
  async listByUser(userId: string): Promise<Session[]> {
    const user = requireText(userId, "user_id", 256);
    const page = await this.#store.list({ userId: user }, { limit: 1000 }, this.#clock.now());
    return page.sessions.map(toPublicSession);
  }

  /**
   * Change the fields present in `update`; refreshes `lastActiveAt`, not the expiry.
   * @throws {AppError} NOT_FOUND, FAILED_PRECONDITION (terminated), ALREADY_EXISTS (connection)
   */
  async update(sessionId: string, update: SessionUpdate): Promise<Session> {
    const id = requireId(sessionId, "session_id");
    const patch: Partial<StoredSession> = {};
    if (update.state !== undefined) {
      if (update.state !== "active" && update.state !== "idle") {
        throw new RangeError("Invalid state: only ACTIVE or IDLE can be set (delete to terminate)");
      }
      patch.state = update.state;
    }
    if (update.metadata !== undefined) {
      patch.metadata = validMetadata(update.metadata, "metadata", this.#metadataLimits);
    }
    if (update.stats !== undefined) patch.stats = validStats(update.stats, "stats");
    if (update.connectionId !== undefined) {
      patch.connectionId = optionalId(update.connectionId, "connection_id");
    }
    if (update.serverAddress !== undefined) {
      patch.serverAddress = optionalText(update.serverAddress, "server_address", 256);
    }
    const now = this.#clock.now();
    const next = await this.#store.update(id, now, (current) => {
      if (current.state === "terminated") throw terminated(id);
      return { ...current, ...patch, lastActiveAt: now };
    });
    return toPublicSession(next);
  }

  /**
   * Extend the expiry to `now + ttl` (the given TTL, which also becomes the session's, or the
   * session's own). Refuses expired (NOT_FOUND) and terminated (FAILED_PRECONDITION) sessions.
   */
  async heartbeat(sessionId: string, options: { ttlSeconds?: number } = {}): Promise<Session> {
    const id = requireId(sessionId, "session_id");
    const ttlMs = options.ttlSeconds ? this.#ttlMs(options.ttlSeconds, 0) : undefined;
    const now = this.#clock.now();
    const next = await this.#store.update(id, now, (current) => {
      if (current.state === "terminated") throw terminated(id);
      const ttl = ttlMs ?? current.ttlMs;
      return { ...current, ttlMs: ttl, lastActiveAt: now, expiresAt: now + ttl };
    });
    return toPublicSession(next);
  }

  /** Terminate and remove a session. @throws {AppError} NOT_FOUND */
  async delete(sessionId: string): Promise<void> {
    const id = requireId(sessionId, "session_id");
    if (!(await this.#store.delete(id, this.#clock.now()))) throw notFound(id);
  }

  /**
   * A page of sessions matching `query`, in id order, with the total count. New sessions get
   * larger ids, so paging stays stable while others insert: nothing is skipped or repeated.
   */
  async list(query: SessionQuery = {}, options: ListOptions = {}): Promise<SessionListPage> {
    const filters = validQuery(query);
    const limit = options.pageSize ? integerIn(options.pageSize, "page_size", 1, 1000) : 100;
    const cursor = options.pageToken ? decodePageToken(options.pageToken) : undefined;
    const now = this.#clock.now();
    // The total is counted once, for the first page, and carried in the cursor, so later
    // pages cost O(page size) rather than another scan of every session.
    const [page, totalCount] = await Promise.all([
      this.#store.list(filters, { after: cursor?.after, limit }, now),
      cursor?.total ?? this.#store.count(filters, now),
    ]);
    return {
      sessions: page.sessions.map(toPublicSession),
      nextPageToken: page.nextAfter === null ? "" : encodePageToken(page.nextAfter, totalCount),
      totalCount,
    };
  }

  /** How many sessions match `query`. */
  count(query: SessionQuery = {}): Promise<number> {
    return this.#store.count(validQuery(query), this.#clock.now());
  }

  /**
   * Exchange the current token for a new one. A token that was already rotated away
   * terminates the session and rejects with UNAUTHENTICATED.
   */
  async rotateToken(token: string): Promise<SessionWithToken> {
    const hash = hashToken(requireToken(token));
    const now = this.#clock.now();
    const found = await this.#store.getByTokenHash(hash, now);
    if (found === null) throw new AppError("NOT_FOUND", "Unknown or expired token");
    const replacement = newToken();
    let reused = false;
    const next = await this.#store.update(found.id, now, (current) => {
      reused = current.tokenHash !== hash;
      if (reused) {
        return current.state === "terminated" ? current : { ...current, state: "terminated" };
      }
      if (current.state === "terminated") throw terminated(current.id);
      return {
        ...current,
        tokenHash: hashToken(replacement),
        rotatedTokenHashes: [...current.rotatedTokenHashes, hash].slice(-MAX_ROTATED_TOKENS),
        lastActiveAt: now,
      };
    });
    if (reused) {
      throw new AppError("UNAUTHENTICATED", "Token reuse detected: the session was terminated");
    }
    return { session: toPublicSession(next), token: replacement };
  }

  /** Delete sessions expired by now (up to `limit`); returns how many. */
  sweep(limit?: number): Promise<number> {
    return this.#store.sweep(this.#clock.now(), limit);
  }

  #ttlMs(ttlSeconds: number | undefined, fallbackMs: number): number {
    if (ttlSeconds === undefined || ttlSeconds === 0) return fallbackMs;
    return integerIn(ttlSeconds, "ttl_seconds", 1, this.#maxTtlSeconds) * 1000;
  }
}

/** A new random token: 32 bytes, base64url without padding. */
export function newToken(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(TOKEN_BYTES))).toString("base64url");
}

/** The SHA-256 of a token, hex; what the store keeps. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

function requireToken(token: unknown): string {
  if (token === undefined || token === null || token === "") throw new TypeError("Missing token");
  if (typeof token !== "string" || !TOKEN_PATTERN.test(token)) {
    throw new TypeError("Invalid token: expected 43 base64url characters");
  }
  return token;
}

function validQuery(query: SessionQuery): SessionQuery {
  const out: SessionQuery = {};
  if (query.userId !== undefined) out.userId = requireText(query.userId, "user_id", 256);
  if (query.state !== undefined) {
    if (!["active", "idle", "expired", "terminated"].includes(query.state)) {
      throw new RangeError("Invalid state: unknown session state");
    }
    out.state = query.state;
  }
  if (query.createdAfter !== undefined) {
    out.createdAfter = integerIn(query.createdAfter, "created_after", 0, Number.MAX_SAFE_INTEGER);
  }
  if (query.createdBefore !== undefined) {
    out.createdBefore = integerIn(
      query.createdBefore,
      "created_before",
      0,
      Number.MAX_SAFE_INTEGER,
    );
  }
  return out;
}

/** Cursor: the last id returned and the total counted on the first page. */
interface PageCursor {
  after: string;
  total: number;
}

function encodePageToken(after: string, total: number): string {
  return Buffer.from(`${after}.${total}`).toString("base64url");
}

function decodePageToken(token: string): PageCursor {
  const text = typeof token === "string" ? Buffer.from(token, "base64url").toString() : "";
  const [after, total, ...rest] = text.split(".");
  try {
    if (rest.length > 0 || total === undefined || !/^\d{1,15}$/.test(total)) {
      throw new TypeError("bad cursor");
    }
    return { after: requireId(after, "page_token"), total: Number(total) };
  } catch {
    throw new TypeError("Invalid page_token: not a cursor from a previous page");
  }
}

function notFound(id: string): AppError {
  return new AppError("NOT_FOUND", `Session ${id} not found`);
}

function terminated(id: string): AppError {
  return new AppError("FAILED_PRECONDITION", `Session ${id} is terminated`);
}
