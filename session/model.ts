/**
 * The session model as stored and returned by the manager, with its lifecycle.
 *
 * State transitions (enforced by {@link SessionManager}):
 *
 * ```
 *   create ──► active ◄──update──► idle
 *                │                   │
 *                ├─ expiresAt ≤ now ─┴──► expired    (gone: every read treats it as absent,
 *                │                                    the sweeper deletes it)
 *                └─ delete / eviction / token reuse ──► terminated
 * ```
 *
 * - `active` ⇄ `idle`: by update (the owner marks a background tab idle and back).
 * - `active`/`idle` → `expired`: the expiry passed without a heartbeat. Expiry is derived from
 *   `expiresAt` on every read, never from a timer, so an expired session is gone the moment
 *   its time has passed, even before the sweeper removes it.
 * - `active`/`idle` → `terminated`: token reuse was detected (the record stays until its
 *   expiry so later presentations of the token family keep failing), or the session was
 *   deleted or evicted (the record is removed at once).
 * - `expired` and `terminated` are final: heartbeat, update and token use are refused.
 *
 * @example
 * ```ts
 * const view = toPublicSession(record); // drops token hashes before returning a session
 * ```
 * @module
 */

/** Lifecycle state of a session. */
export type SessionState =
  /** Connected and heartbeating. */
  | "active"
  /** Still valid but marked idle by its owner (e.g. a tab in the background). */
  | "idle"
  /** Expiry passed; treated as absent by every read until the sweeper removes it. */
  | "expired"
  /** Ended on purpose (token reuse); never valid again. */
  | "terminated";

/** Traffic counters a gateway reports for a session. */
export interface SessionStats {
  /** Messages received from the client. */
  messagesIn: number;
  /** Messages sent to the client. */
  messagesOut: number;
  /** Bytes received from the client. */
  bytesIn: number;
  /** Bytes sent to the client. */
  bytesOut: number;
  /** Document operations submitted by the client. */
  operations: number;
}

/** A session as callers see it (no token material). Times are epoch ms. */
export interface Session {
  /** Session id, a UUIDv7. */
  id: string;
  /** The user owning the session. */
  userId: string;
  /** Quantum connection id (UUIDv7), or "" when there is none. */
  connectionId: string;
  /** Client address as seen by the gateway ("" when unknown). */
  clientIp: string;
  /** Client source port (0 when unknown). */
  clientPort: number;
  /** Address of the gateway instance serving the session ("" when unknown). */
  serverAddress: string;
  /** Current lifecycle state. */
  state: SessionState;
  /** Creation time. */
  createdAt: number;
  /** Last heartbeat or update. */
  lastActiveAt: number;
  /** Expiry time; the session is gone at and after it. */
  expiresAt: number;
  /** Time to live applied by heartbeats that do not name one, in ms. */
  ttlMs: number;
  /** Free-form metadata (size-limited). */
  metadata: Record<string, string>;
  /** Traffic counters. */
  stats: SessionStats;
}

/** A session as stored: the public view plus its token family (SHA-256 hashes, hex). */
export interface StoredSession extends Session {
  /** Hash of the one token that is currently valid. */
  tokenHash: string;
  /** Hashes of tokens already rotated away, oldest first (bounded, see `MAX_ROTATED_TOKENS`). */
  rotatedTokenHashes: string[];
}

/** How many rotated token hashes a session keeps for reuse detection. */
export const MAX_ROTATED_TOKENS = 64;

/** Counters all at zero. */
export function emptyStats(): SessionStats {
  return { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, operations: 0 };
}

/** True when the session's expiry has passed at `now`. */
export function isExpired(session: Session, now: number): boolean {
  return session.expiresAt <= now;
}

/** The public view of a stored session (copies; token hashes dropped). */
export function toPublicSession(stored: StoredSession): Session {
  return {
    id: stored.id,
    userId: stored.userId,
    connectionId: stored.connectionId,
    clientIp: stored.clientIp,
    clientPort: stored.clientPort,
    serverAddress: stored.serverAddress,
    state: stored.state,
    createdAt: stored.createdAt,
    lastActiveAt: stored.lastActiveAt,
    expiresAt: stored.expiresAt,
    ttlMs: stored.ttlMs,
    metadata: { ...stored.metadata },
    stats: { ...stored.stats },
  };
}

/** A deep copy of a stored session (stores hand out copies so callers cannot alias state). */
export function cloneStored(stored: StoredSession): StoredSession {
  return {
    ...toPublicSession(stored),
    tokenHash: stored.tokenHash,
    rotatedTokenHashes: [...stored.rotatedTokenHashes],
  };
}
