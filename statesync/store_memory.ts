/**
 * An in-memory {@link DocumentStore} for tests and ephemeral use. Values are copied
 * in and out, so callers can never alias stored state.
 *
 * @example
 * ```ts
 * const store = new MemoryDocumentStore();
 * const manager = new DocumentManager(store, {});
 * ```
 * @module
 */
import { AppError } from "../kernel/mod.ts";
import type { ConflictRecord, OperationRecord } from "./model.ts";
import { validateRequest } from "./store.ts";
import type {
  CommitOutcome,
  CommitRequest,
  DedupeEntry,
  DocumentHead,
  DocumentStore,
  ListOptions,
  Snapshot,
  StoreCounts,
} from "./store.ts";
import type { Json } from "./model.ts";

interface DocEntry {
  head: DocumentHead;
  ops: OperationRecord[];
  snapshots: Snapshot[];
  dedupe: Map<string, DedupeEntry>;
  conflicts: Map<string, ConflictRecord>;
}

/** A {@link DocumentStore} kept in process memory. */
export class MemoryDocumentStore implements DocumentStore {
  #docs = new Map<string, DocEntry>();
  #closed = false;

  createDocument(head: DocumentHead, content: Json): Promise<void> {
    this.#assertOpen();
    if (this.#docs.has(head.id)) {
      return Promise.reject(new AppError("ALREADY_EXISTS", `Document ${head.id} already exists`));
    }
    this.#docs.set(head.id, {
      head: structuredClone(head),
      ops: [],
      snapshots: [{ version: head.version, content: structuredClone(content) }],
      dedupe: new Map(),
      conflicts: new Map(),
    });
    return Promise.resolve();
  }

  getHead(documentId: string): Promise<DocumentHead | null> {
    this.#assertOpen();
    const entry = this.#docs.get(documentId);
    return Promise.resolve(entry ? structuredClone(entry.head) : null);
  }

  listHeads(options: ListOptions): Promise<DocumentHead[]> {
    this.#assertOpen();
    const ids = [...this.#docs.keys()].filter((id) =>
      options.after === undefined || id > options.after
    )
      .sort().slice(0, options.limit);
    return Promise.resolve(ids.map((id) => structuredClone(this.#docs.get(id)!.head)));
  }

  commit(requests: readonly CommitRequest[]): Promise<CommitOutcome[]> {
    this.#assertOpen();
    const outcomes: CommitOutcome[] = [];
    for (const request of requests) {
      const entry = this.#docs.get(request.documentId);
      if (entry === undefined || entry.head.version !== request.expectedVersion) {
        outcomes.push("version_conflict");
        continue;
      }
      validateRequest(request);
      entry.head = structuredClone(request.head);
      for (const op of request.ops) entry.ops.push(structuredClone(op));
      for (const d of request.dedupe) {
        entry.dedupe.set(dedupeKey(d.sessionId, d.clientOpId), structuredClone(d));
      }
      for (const c of request.conflicts) entry.conflicts.set(c.id, structuredClone(c));
      outcomes.push("committed");
    }
    return Promise.resolve(outcomes);
  }

  getOps(
    documentId: string,
    fromVersion: number,
    toVersion: number,
    limit = Number.MAX_SAFE_INTEGER,
  ): Promise<OperationRecord[]> {
    this.#assertOpen();
    const ops = this.#docs.get(documentId)?.ops ?? [];
    const start = Math.max(0, fromVersion);
    const end = Math.min(ops.length, toVersion, start + limit);
    return Promise.resolve(ops.slice(start, Math.max(start, end)).map((op) => structuredClone(op)));
  }

  putSnapshot(documentId: string, snapshot: Snapshot): Promise<void> {
    this.#assertOpen();
    const entry = this.#docs.get(documentId);
    if (entry === undefined) return Promise.resolve();
    const copy = structuredClone(snapshot);
    const index = entry.snapshots.findIndex((s) => s.version >= snapshot.version);
    if (index === -1) entry.snapshots.push(copy);
    else if (entry.snapshots[index]!.version === snapshot.version) entry.snapshots[index] = copy;
    else entry.snapshots.splice(index, 0, copy);
    return Promise.resolve();
  }

  getSnapshot(documentId: string, atOrBefore: number): Promise<Snapshot | null> {
    this.#assertOpen();
    const snapshots = this.#docs.get(documentId)?.snapshots ?? [];
    for (let i = snapshots.length - 1; i >= 0; i--) {
      const snapshot = snapshots[i]!;
      if (snapshot.version <= atOrBefore) return Promise.resolve(structuredClone(snapshot));
    }
    return Promise.resolve(null);
  }

  findDedupe(
    documentId: string,
    sessionId: string,
    clientOpId: string,
  ): Promise<DedupeEntry | null> {
    this.#assertOpen();
    const entry = this.#docs.get(documentId)?.dedupe.get(dedupeKey(sessionId, clientOpId));
    return Promise.resolve(entry ? structuredClone(entry) : null);
  }

  getConflict(documentId: string, conflictId: string): Promise<ConflictRecord | null> {
    this.#assertOpen();
    const conflict = this.#docs.get(documentId)?.conflicts.get(conflictId);
    return Promise.resolve(conflict ? structuredClone(conflict) : null);
  }

  listConflicts(
    documentId: string,
    options: ListOptions & { includeResolved: boolean },
  ): Promise<ConflictRecord[]> {
    this.#assertOpen();
    const all = [...(this.#docs.get(documentId)?.conflicts.values() ?? [])]
      .filter((c) => options.after === undefined || c.id > options.after)
      .filter((c) => options.includeResolved || c.state === "open")
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .slice(0, options.limit);
    return Promise.resolve(all.map((c) => structuredClone(c)));
  }

  counts(): Promise<StoreCounts> {
    this.#assertOpen();
    const counts: StoreCounts = { documents: 0, operations: 0, conflicts: 0, openConflicts: 0 };
    for (const entry of this.#docs.values()) {
      counts.documents++;
      counts.operations += entry.ops.length;
      for (const c of entry.conflicts.values()) {
        counts.conflicts++;
        if (c.state === "open") counts.openConflicts++;
      }
    }
    return Promise.resolve(counts);
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }

  #assertOpen(): void {
    if (this.#closed) throw new AppError("UNAVAILABLE", "Document store is closed");
  }
}

/** Key of a dedupe entry. */
function dedupeKey(sessionId: string, clientOpId: string): string {
  return `${sessionId}\u0000${clientOpId}`;
}
