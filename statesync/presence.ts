/**
 * Presence: ephemeral per-user state on a document (cursor, selection, custom data),
 * size-limited, with a TTL, never persisted. Also tracks which users are active on a
 * document — those with a live subscription or presence — and publishes user_joined,
 * user_left and presence_updated.
 *
 * @example
 * ```ts
 * const presence = new PresenceManager({ events: hub });
 * presence.attach(documentId, "alice"); // a subscription opened: user_joined
 * presence.update(documentId, "alice", { state: { cursor: 4 } }); // presence_updated
 * presence.detach(documentId, "alice"); // last subscription gone: presence dropped, user_left
 * ```
 * @module
 */
import {
  AppError,
  type Clock,
  systemClock,
  systemTimers,
  type TimerHandle,
  type Timers,
} from "../kernel/mod.ts";
import type { Json } from "./json0/types.ts";
import type { EventSink } from "./model.ts";
import type { EventType, PresenceRecord } from "./events.ts";

/** Options for {@link PresenceManager}. */
export interface PresenceManagerOptions {
  /** Epoch-ms clock (default: wall clock). */
  clock?: Clock;
  /** Timers for presence expiry (default: real timers). */
  timers?: Timers;
  /** Where user_joined / user_left / presence_updated go. */
  events?: EventSink;
  /** The document version stamped on events (default: 0). */
  versionOf?: (documentId: string) => number;
  /** TTL when the caller gives none (default 30 s). */
  defaultTtlMs?: number;
  /** Largest TTL accepted (default 10 min). */
  maxTtlMs?: number;
  /** Largest state, as UTF-8 JSON bytes (default 4096). */
  maxStateBytes?: number;
  /** Most active users per document (default 1000). */
  maxUsersPerDocument?: number;
  /**
   * Presence held by other instances (distributed mode: `EtcdEventBridge`), merged
   * into {@link PresenceManager.list}.
   */
  remote?: PresenceSource;
}

/**
 * Live presence records that another component holds, e.g. other instances' presence.
 *
 * @example
 * ```ts
 * const none: PresenceSource = { list: () => [] };
 * ```
 */
export interface PresenceSource {
  /** Records of `documentId` that have not expired at `now` (epoch ms). */
  list(documentId: string, now: number): PresenceRecord[];
}

/** Input of {@link PresenceManager.update}. */
export interface PresenceInput {
  sessionId?: string;
  /** The new state (replaces the previous one). */
  state: Json;
  /** Lifetime from now; 0 or omitted = the default. */
  ttlMs?: number;
}

interface UserEntry {
  subscriptions: number;
  presence?: PresenceRecord;
  timer?: TimerHandle;
}

const encoder = new TextEncoder();

/** Presence and active users of one StateSync instance. */
export class PresenceManager {
  #clock: Clock;
  #timers: Timers;
  #events: EventSink | undefined;
  #versionOf: (documentId: string) => number;
  #defaultTtlMs: number;
  #maxTtlMs: number;
  #maxStateBytes: number;
  #maxUsers: number;
  #remote: PresenceSource | undefined;
  #docs = new Map<string, Map<string, UserEntry>>();

  constructor(options: PresenceManagerOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#timers = options.timers ?? systemTimers;
    this.#events = options.events;
    this.#versionOf = options.versionOf ?? (() => 0);
    this.#defaultTtlMs = options.defaultTtlMs ?? 30_000;
    this.#maxTtlMs = options.maxTtlMs ?? 600_000;
    this.#maxStateBytes = options.maxStateBytes ?? 4096;
    this.#maxUsers = options.maxUsersPerDocument ?? 1000;
    this.#remote = options.remote;
  }

  /**
   * Set a user's presence state (joining the document if needed).
   * @throws {RangeError} for a TTL out of range
   * @throws {AppError} RESOURCE_EXHAUSTED when the state is too large or the document has
   *   too many active users
   */
  update(documentId: string, userId: string, input: PresenceInput): PresenceRecord {
    const ttlMs = input.ttlMs || this.#defaultTtlMs;
    if (!Number.isInteger(ttlMs) || ttlMs < 1 || ttlMs > this.#maxTtlMs) {
      throw new RangeError(`Invalid ttl_ms: expected 1..${this.#maxTtlMs}`);
    }
    const bytes = encoder.encode(JSON.stringify(input.state)).length;
    if (bytes > this.#maxStateBytes) {
      throw new AppError(
        "RESOURCE_EXHAUSTED",
        `Presence state is ${bytes} bytes, over the limit of ${this.#maxStateBytes}`,
      );
    }
    const entry = this.#join(documentId, userId);
    const now = this.#clock.now();
    const record: PresenceRecord = {
      userId,
      sessionId: input.sessionId ?? entry.presence?.sessionId ?? "",
      state: input.state,
      updatedAt: now,
      expiresAt: now + ttlMs,
    };
    if (entry.timer !== undefined) this.#timers.clear(entry.timer);
    entry.presence = record;
    entry.timer = this.#timers.set(() => this.#expire(documentId, userId), ttlMs);
    this.#publish("presence_updated", documentId, userId, { presence: record });
    return record;
  }

  /**
   * Clear a user's presence (e.g. an empty UpdatePresence). The user stays active while
   * a subscription of theirs is open. Returns false when there was no presence.
   */
  leave(documentId: string, userId: string, reason = "left"): boolean {
    const entry = this.#docs.get(documentId)?.get(userId);
    if (entry?.presence === undefined) return false;
    this.#clear(documentId, userId, entry, reason);
    return true;
  }

  /**
   * Count a new subscription of `userId` (user_joined when the user was not active).
   * @throws {AppError} RESOURCE_EXHAUSTED when the document has too many active users
   */
  attach(documentId: string, userId: string): void {
    this.#join(documentId, userId).subscriptions++;
  }

  /** Count a closed subscription; after the user's last one, presence is dropped: user_left. */
  detach(documentId: string, userId: string): void {
    const entry = this.#docs.get(documentId)?.get(userId);
    if (entry === undefined || entry.subscriptions === 0) return;
    entry.subscriptions--;
    if (entry.subscriptions === 0) {
      if (entry.timer !== undefined) this.#timers.clear(entry.timer);
      entry.presence = undefined;
      entry.timer = undefined;
      this.#part(documentId, userId, "unsubscribed");
    }
  }

  /**
   * Live presence records of a document: this instance's and, with a `remote` source,
   * other instances' (one record per user, the most recently updated).
   */
  list(documentId: string): PresenceRecord[] {
    const now = this.#clock.now();
    const out: PresenceRecord[] = [];
    for (const entry of this.#docs.get(documentId)?.values() ?? []) {
      if (entry.presence !== undefined && entry.presence.expiresAt > now) out.push(entry.presence);
    }
    if (this.#remote === undefined) return out;
    const byUser = new Map(out.map((record) => [record.userId, record]));
    for (const record of this.#remote.list(documentId, now)) {
      const seen = byUser.get(record.userId);
      if (seen === undefined || record.updatedAt > seen.updatedAt) {
        byUser.set(record.userId, record);
      }
    }
    return [...byUser.values()];
  }

  /** Users with a live subscription or presence on a document. */
  activeUsers(documentId: string): string[] {
    return [...(this.#docs.get(documentId)?.keys() ?? [])];
  }

  /** Active (document, user) pairs over all documents. */
  activeUserCount(): number {
    let n = 0;
    for (const users of this.#docs.values()) n += users.size;
    return n;
  }

  /** Drop everything without events and clear every timer. */
  close(): void {
    for (const users of this.#docs.values()) {
      for (const entry of users.values()) {
        if (entry.timer !== undefined) this.#timers.clear(entry.timer);
      }
    }
    this.#docs.clear();
  }

  #join(documentId: string, userId: string): UserEntry {
    let users = this.#docs.get(documentId);
    const existing = users?.get(userId);
    if (existing !== undefined) return existing;
    if ((users?.size ?? 0) >= this.#maxUsers) {
      throw new AppError(
        "RESOURCE_EXHAUSTED",
        `Too many active users on document ${documentId} (limit ${this.#maxUsers})`,
      );
    }
    if (users === undefined) {
      users = new Map();
      this.#docs.set(documentId, users);
    }
    const entry: UserEntry = { subscriptions: 0 };
    users.set(userId, entry);
    this.#publish("user_joined", documentId, userId, {});
    return entry;
  }

  #expire(documentId: string, userId: string): void {
    const entry = this.#docs.get(documentId)?.get(userId);
    if (entry?.presence === undefined) return;
    entry.timer = undefined;
    this.#clear(documentId, userId, entry, "expired");
  }

  #clear(documentId: string, userId: string, entry: UserEntry, reason: string): void {
    const presence = entry.presence!;
    if (entry.timer !== undefined) this.#timers.clear(entry.timer);
    entry.presence = undefined;
    entry.timer = undefined;
    if (entry.subscriptions > 0) {
      const now = this.#clock.now();
      const cleared = { ...presence, state: null, updatedAt: now, expiresAt: now };
      this.#publish("presence_updated", documentId, userId, { presence: cleared, reason });
    } else {
      this.#part(documentId, userId, reason);
    }
  }

  #part(documentId: string, userId: string, reason: string): void {
    const users = this.#docs.get(documentId);
    users?.delete(userId);
    if (users?.size === 0) this.#docs.delete(documentId);
    this.#publish("user_left", documentId, userId, { reason });
  }

  #publish(
    type: EventType,
    documentId: string,
    userId: string,
    extra: { presence?: PresenceRecord; reason?: string },
  ): void {
    this.#events?.publish({
      type,
      documentId,
      version: this.#versionOf(documentId),
      timestamp: this.#clock.now(),
      userId,
      ...extra,
    });
  }
}
