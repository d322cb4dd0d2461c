/**
 * A {@link DocumentStore} decorator that puts a client span around every store commit (and
 * document creation), so a trace shows gateway → statesync → store. With group commit one
 * physical commit can carry several callers' operations: the span is a child of the caller
 * whose operation started the commit and records how many requests it carried.
 * @module
 */
import { SpanKind, trace } from "@opentelemetry/api";
import { recordSpanError, withSpan } from "../kernel/mod.ts";
import type { Json } from "./json0/types.ts";
import type { ConflictRecord, OperationRecord } from "./model.ts";
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

const tracer = trace.getTracer("aetherflow-statesync");

/** `store` with spans around its writes; `system` names the backend ("deno-kv", "memory"). */
export class TracedDocumentStore implements DocumentStore {
  #store: DocumentStore;
  #system: string;

  constructor(store: DocumentStore, system: string) {
    this.#store = store;
    this.#system = system;
  }

  async #span<T>(
    name: string,
    attributes: Record<string, number | string>,
    fn: () => Promise<T>,
  ): Promise<T> {
    const span = tracer.startSpan(name, {
      kind: SpanKind.CLIENT,
      attributes: { "db.system.name": this.#system, ...attributes },
    });
    try {
      return await withSpan(span, fn);
    } catch (error) {
      recordSpanError(span, error);
      throw error;
    } finally {
      span.end();
    }
  }

  createDocument(head: DocumentHead, content: Json): Promise<void> {
    return this.#span(
      "statesync.store create_document",
      {},
      () => this.#store.createDocument(head, content),
    );
  }
  getHead(documentId: string): Promise<DocumentHead | null> {
    return this.#store.getHead(documentId);
  }
  listHeads(options: ListOptions): Promise<DocumentHead[]> {
    return this.#store.listHeads(options);
  }
  commit(requests: readonly CommitRequest[]): Promise<CommitOutcome[]> {
    const operations = requests.reduce((n, r) => n + r.ops.length, 0);
    return this.#span(
      "statesync.store commit",
      { "aetherflow.commit.requests": requests.length, "aetherflow.commit.operations": operations },
      () => this.#store.commit(requests),
    );
  }
  getOps(
    documentId: string,
    fromVersion: number,
    toVersion: number,
    limit?: number,
  ): Promise<OperationRecord[]> {
    return this.#store.getOps(documentId, fromVersion, toVersion, limit);
  }
  putSnapshot(documentId: string, snapshot: Snapshot): Promise<void> {
    return this.#store.putSnapshot(documentId, snapshot);
  }
  getSnapshot(documentId: string, atOrBefore: number): Promise<Snapshot | null> {
    return this.#store.getSnapshot(documentId, atOrBefore);
  }
  findDedupe(
    documentId: string,
    sessionId: string,
    clientOpId: string,
  ): Promise<DedupeEntry | null> {
    return this.#store.findDedupe(documentId, sessionId, clientOpId);
  }
  getConflict(documentId: string, conflictId: string): Promise<ConflictRecord | null> {
    return this.#store.getConflict(documentId, conflictId);
  }
  listConflicts(
    documentId: string,
    options: ListOptions & { includeResolved: boolean },
  ): Promise<ConflictRecord[]> {
    return this.#store.listConflicts(documentId, options);
  }
  counts(): Promise<StoreCounts> {
    return this.#store.counts();
  }
  close(): Promise<void> {
    return this.#store.close();
  }
}
