/**
 * The storage interface of the document engine. Two implementations pass one shared
 * suite (`store_suite.ts`): {@link MemoryDocumentStore} for tests and
 * {@link KvDocumentStore} (Deno KV, SQLite on local disk) as the embedded default.
 *
 * The history of operations is the source of truth: a document's content at version
 * `v` is its nearest snapshot at or below `v` with the ops after it replayed. Heads
 * (the document record without content) and ops are written by {@link DocumentStore.commit},
 * atomically per document and optimistically checked against the head the caller read.
 *
 * @example
 * ```ts
 * const [outcome] = await store.commit([{ documentId, expectedVersion: 4, head, ops, dedupe: [], conflicts: [] }]);
 * if (outcome === "version_conflict") {
 *   // someone else committed first: reload and transform again
 * }
 * ```
 * @module
 */
import type { ConflictRecord, DocumentRecord, Json, OperationRecord } from "./model.ts";

/** A document record without its content (what the store keeps per document). */
export type DocumentHead = Omit<DocumentRecord, "content">;

/** The content of a document at one version. */
export interface Snapshot {
  version: number;
  content: Json;
}

/** What a (session, client op id) pair produced, for resend de-duplication. */
export interface DedupeEntry {
  sessionId: string;
  clientOpId: string;
  /** The server id of the operation. */
  operationId: string;
  /** The version the op produced (0 when it was held). */
  version: number;
  /** True when the op was held as an open conflict and not applied. */
  held: boolean;
  /** Conflicts the op caused. */
  conflictIds: string[];
}

/** One document's share of a commit. */
export interface CommitRequest {
  documentId: string;
  /** The version the stored head must still have; otherwise nothing of this request is written. */
  expectedVersion: number;
  /** The new head (its version is `expectedVersion + ops.length`). */
  head: DocumentHead;
  /** Ops producing versions `expectedVersion + 1 ...`, in order. */
  ops: OperationRecord[];
  /**
   * De-duplication entries to index. The document engine sends only what its op log cannot
   * answer (held ops, ops with conflicts, conflict resolutions): a plain applied op is found
   * by its session and client op id among the ops after its base version.
   */
  dedupe: DedupeEntry[];
  /** Conflicts to insert or replace (by id). */
  conflicts: ConflictRecord[];
}

/** The fate of one {@link CommitRequest}. */
export type CommitOutcome =
  /** Everything in the request is stored. */
  | "committed"
  /** The stored head changed since it was read (or is missing); nothing was written. */
  | "version_conflict";

/** Options for listing. */
export interface ListOptions {
  /** Start after this id (exclusive). */
  after?: string;
  /** Most items returned. */
  limit: number;
}

/** Totals over the whole store. */
export interface StoreCounts {
  documents: number;
  operations: number;
  conflicts: number;
  openConflicts: number;
}

/** Persistent state of the document engine. */
export interface DocumentStore {
  /**
   * Store a new document at version 0 with its initial content as the first snapshot.
   * @throws {AppError} ALREADY_EXISTS when the id is taken
   */
  createDocument(head: DocumentHead, content: Json): Promise<void>;
  /** The head of a document (deleted ones included), or null. */
  getHead(documentId: string): Promise<DocumentHead | null>;
  /** Heads in id order. */
  listHeads(options: ListOptions): Promise<DocumentHead[]>;
  /**
   * Commit several documents' changes, each atomically and checked on its version.
   * Implementations may group requests into fewer physical transactions; a request
   * is never partly written. Resolves with one outcome per request, in order.
   * @throws when the storage itself fails (then any request may or may not be stored)
   */
  commit(requests: readonly CommitRequest[]): Promise<CommitOutcome[]>;
  /** Ops with `fromVersion < version <= toVersion`, ascending, at most `limit`. */
  getOps(
    documentId: string,
    fromVersion: number,
    toVersion: number,
    limit?: number,
  ): Promise<OperationRecord[]>;
  /** Store a snapshot (derived data: losing one only costs replay time). */
  putSnapshot(documentId: string, snapshot: Snapshot): Promise<void>;
  /** The snapshot with the greatest version `<= atOrBefore`, or null. */
  getSnapshot(documentId: string, atOrBefore: number): Promise<Snapshot | null>;
  /** The indexed de-duplication entry of a (session, client op id) pair on a document, or null. */
  findDedupe(
    documentId: string,
    sessionId: string,
    clientOpId: string,
  ): Promise<DedupeEntry | null>;
  /** One conflict, or null. */
  getConflict(documentId: string, conflictId: string): Promise<ConflictRecord | null>;
  /** A document's conflicts in id (creation) order. */
  listConflicts(
    documentId: string,
    options: ListOptions & { includeResolved: boolean },
  ): Promise<ConflictRecord[]>;
  /** Totals (may scan; meant for stats, not hot paths). */
  counts(): Promise<StoreCounts>;
  /** Release handles; the store is unusable afterwards. */
  close(): Promise<void>;
}

/**
 * Check a request is internally consistent (a caller bug otherwise).
 * @throws {RangeError} when versions do not line up
 */
export function validateRequest(request: CommitRequest): void {
  const expected = request.expectedVersion + request.ops.length;
  if (request.head.version !== expected || request.head.id !== request.documentId) {
    throw new RangeError(
      `Invalid commit for ${request.documentId}: head version ${request.head.version}, expected ${expected}`,
    );
  }
  request.ops.forEach((op, i) => {
    if (op.version !== request.expectedVersion + i + 1 || op.documentId !== request.documentId) {
      throw new RangeError(`Invalid commit for ${request.documentId}: op ${op.id} out of order`);
    }
  });
}
