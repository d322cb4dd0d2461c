/**
 * Real-time document events: what subscribers of a document receive, plus the lock and
 * presence records those events carry. Pure types, browser-safe.
 *
 * @example
 * ```ts
 * const event: DocEvent = { type: "lock_released", documentId, version: 3, timestamp: now };
 * sink.publish(event);
 * ```
 * @module
 */
import type { Json, Path } from "./json0/types.ts";
import type { ConflictRecord, DocumentRecord, OperationRecord } from "./model.ts";

/** Kinds of document events. */
export type EventType =
  /** An operation was committed; `operation` holds it (transformed, with its version). */
  | "operation_applied"
  /** Document attributes (name, state, permissions, ...) changed; `document` holds it. */
  | "document_updated"
  /** A user became active on the document (first subscription or presence). */
  | "user_joined"
  /** A user is no longer active (last subscription gone, presence cleared or expired). */
  | "user_left"
  /** A genuine collision was recorded; `conflict` holds it. */
  | "conflict_detected"
  /** A conflict was resolved; `conflict` holds it. */
  | "conflict_resolved"
  /** A lock was granted or renewed; `lock` holds it. */
  | "lock_acquired"
  /** A lock was released or expired; `lock` holds it. */
  | "lock_released"
  /** A user's presence state changed; `presence` holds it. */
  | "presence_updated"
  /** The subscriber cannot be caught up (history gone, fell behind): reload; see `reason`. */
  | "resync_required"
  /** Sent once after the catch-up operations: from here on events are live. */
  | "subscribed";

/** A granted lock on a document (empty path) or a subtree of it. */
export interface LockRecord {
  /** Lock id (UUIDv7). */
  id: string;
  documentId: string;
  /** Locked subtree; `[]` = the whole document. */
  path: Path;
  /** Holder. */
  ownerId: string;
  sessionId: string;
  /** Epoch ms. */
  acquiredAt: number;
  /** Epoch ms; the lock is gone at or after this time. */
  expiresAt: number;
  /** Increases with every new grant of this document's locks; a renewal keeps it. */
  fencingToken: number;
}

/** One user's ephemeral state on a document (cursor, selection, custom data). */
export interface PresenceRecord {
  userId: string;
  sessionId: string;
  /** Application-defined state; size-limited. */
  state: Json;
  /** Epoch ms. */
  updatedAt: number;
  /** Epoch ms; the presence is dropped at or after this time. */
  expiresAt: number;
}

/** One event delivered to a document's subscribers. */
export interface DocEvent {
  type: EventType;
  documentId: string;
  /** Document version when the event was emitted. */
  version: number;
  /** Epoch ms. */
  timestamp: number;
  /** The user the event is about (joined/left/presence/lock holder). */
  userId?: string;
  operation?: OperationRecord;
  document?: DocumentRecord;
  conflict?: ConflictRecord;
  lock?: LockRecord;
  presence?: PresenceRecord;
  /** Why, for `resync_required` (and a closing reason where one applies). */
  reason?: string;
}
