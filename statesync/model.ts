/**
 * Records shared across statesync: documents, operations, conflicts, and the small
 * interfaces the document engine is wired with (lock guard, event sink).
 *
 * Times are Unix epoch milliseconds; ids are UUIDv7 strings.
 *
 * @example
 * ```ts
 * const doc: DocumentRecord = {
 *   id: newId(), name: "Notes", type: "text", state: "active", ownerId: "alice",
 *   permissions: { editors: [], viewers: [], publicRead: false }, version: 0,
 *   content: { text: "" }, createdAt: 0, updatedAt: 0, metadata: {}, conflictStrategy: "merge",
 * };
 * ```
 * @module
 */
import type { Json, Op, Path } from "./json0/types.ts";
import type { DocEvent } from "./events.ts";

export type { Json, Op, Path };

/** What a document holds; the content is a JSON tree in every case. */
export type DocumentType =
  /** Content `{ text: "..." }`. */
  | "text"
  /** Any JSON object. */
  | "json"
  /** Drawing: shapes in a JSON tree. */
  | "canvas"
  /** Board: columns and cards in a JSON tree. */
  | "board";

/** Lifecycle of a document. */
export type DocumentState =
  /** Editable. */
  | "active"
  /** Read-only until reactivated. */
  | "archived"
  /** Deleted; kept only as a tombstone. */
  | "deleted";

/** How genuinely colliding concurrent edits are settled. */
export type ConflictStrategy =
  /** Default: the applied op's value wins; the conflict is recorded auto_resolved, resolvable. */
  | "merge"
  /** The later op in server order wins; the conflict is recorded auto_resolved. */
  | "lww"
  /** The later op is held (not applied) as an open conflict until someone resolves it. */
  | "manual";

/** Who may do what with a document (the owner may always read and write). */
export interface Permissions {
  /** Users who may edit. */
  editors: string[];
  /** Users who may read. */
  viewers: string[];
  /** When true, every authenticated user may read. */
  publicRead: boolean;
}

/** A document at one version. */
export interface DocumentRecord {
  id: string;
  name: string;
  type: DocumentType;
  state: DocumentState;
  ownerId: string;
  permissions: Permissions;
  /** Number of operations applied; 0 for a new document. */
  version: number;
  /** The content at `version`. */
  content: Json;
  createdAt: number;
  updatedAt: number;
  metadata: Record<string, string>;
  conflictStrategy: ConflictStrategy;
}

/** An operation as stored in history (already transformed to apply at `version - 1`). */
export interface OperationRecord {
  /** Server-assigned UUIDv7. */
  id: string;
  documentId: string;
  /** The version the client made the op against. */
  baseVersion: number;
  /** The version this op produced (0 for a held op that was never applied). */
  version: number;
  authorId: string;
  sessionId: string;
  clientOpId: string;
  /** Server timestamp. */
  timestamp: number;
  op: Op;
}

/** State of a conflict. */
export type ConflictState =
  /** Waiting for someone to resolve it (manual strategy). */
  | "open"
  /** Resolved by a user. */
  | "resolved"
  /** Settled by the strategy (merge winner or lww) and kept for review. */
  | "auto_resolved";

/** Two concurrent operations that set the same path to different values. */
export interface ConflictRecord {
  id: string;
  documentId: string;
  /** The contested path. */
  path: Path;
  strategy: ConflictStrategy;
  state: ConflictState;
  /** The op already applied (first in server order). */
  applied: OperationRecord;
  /** The concurrent op that collided with it. */
  incoming: OperationRecord;
  /** The value each side wanted at `path` (undefined = delete). */
  appliedValue: Json | undefined;
  incomingValue: Json | undefined;
  /** The value in effect after the strategy or the resolution. */
  resolvedValue?: Json;
  createdAt: number;
  resolvedAt?: number;
  resolvedBy?: string;
}

/** Checks path locks before a write; implemented by the lock table. */
export interface LockGuard {
  /**
   * @throws {AppError} FAILED_PRECONDITION naming the holder when another actor holds a lock
   *   covering one of `paths` (an empty path = the whole document)
   */
  assertCanWrite(documentId: string, actorId: string, paths: readonly Path[], now: number): void;
}

/** Where the document engine publishes events (the realtime hub). */
export interface EventSink {
  publish(event: DocEvent): void;
}

/** Input of {@link DocumentManager.create}. */
export interface CreateDocumentInput {
  /** 1..256 characters. */
  name: string;
  type: DocumentType;
  /** Initial content; omitted means the type's default. */
  content?: Json;
  permissions?: Partial<Permissions>;
  metadata?: Record<string, string>;
  conflictStrategy?: ConflictStrategy;
}

/** Fields {@link DocumentManager.update} may change (owner only); omitted fields stay. */
export interface DocumentPatch {
  name?: string;
  state?: DocumentState;
  permissions?: Permissions;
  metadata?: Record<string, string>;
  conflictStrategy?: ConflictStrategy;
}

/** Filter of {@link DocumentManager.list}. */
export interface DocumentFilter {
  ownerId?: string;
  type?: DocumentType;
  /** Omitted means active and archived. */
  state?: DocumentState;
}

/** Input of {@link DocumentManager.apply}. */
export interface ApplyInput {
  documentId: string;
  baseVersion: number;
  sessionId: string;
  clientOpId: string;
  op: Op;
}

/** Outcome of {@link DocumentManager.apply}. */
export interface ApplyResult {
  /** The op as applied (transformed), with id, version and timestamp. */
  operation: OperationRecord;
  /** The document version after the op. */
  version: number;
  /** True when this (session, clientOpId) was seen before; nothing new happened. */
  duplicate: boolean;
  /** True when the op was held as an open conflict (manual strategy) and not applied. */
  held: boolean;
  /** Conflicts this op caused. */
  conflicts: ConflictRecord[];
}

/** A resolution for {@link DocumentManager.resolveConflict}. */
export type ConflictResolution = { side: "applied" | "incoming" } | { value: Json };
