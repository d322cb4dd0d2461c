/**
 * The document engine: documents with permissions and size limits, and the apply path of
 * ShareDB's submit request — validate, load, refuse a version ahead, de-duplicate resends
 * by (session, client op id), transform a stale op against every op since its base
 * version (json0), settle genuine collisions by the document's conflict strategy, check
 * locks, apply, and commit atomically on the document version. Ops are acknowledged only
 * after their commit; concurrent applies (to one or many documents) share one store
 * commit (group commit). Up to two group commits are in flight; a document with a commit in
 * flight waits for it before its next changes are committed. A lost race (another writer
 * committed first) reloads the document and transforms again.
 *
 * @example
 * ```ts
 * const manager = new DocumentManager(new MemoryDocumentStore(), {});
 * const doc = await manager.create("alice", { name: "Notes", type: "text" });
 * const { version } = await manager.apply("alice", {
 *   documentId: doc.id, baseVersion: 0, sessionId: "s1", clientOpId: "1",
 *   op: [{ path: ["text"], action: { type: "text_insert", offset: 0, text: "Hi" } }],
 * });
 * ```
 * @module
 */
import { AppError, newId, systemClock } from "../kernel/mod.ts";
import {
  jsonEqual,
  readCreateInput,
  readDocumentId,
  readName,
  readPatch,
  readVersion,
  valueAt,
} from "./_document_input.ts";
import type { DocEvent } from "./events.ts";
import { apply as applyOp, OpError, parseOp, transformWithCollisions } from "./json0/mod.ts";
import { checkContentSize, checkOpSize, jsonBytes, type Limits, resolveLimits } from "./limits.ts";
import type {
  ApplyInput,
  ApplyResult,
  ConflictRecord,
  ConflictResolution,
  CreateDocumentInput,
  DocumentFilter,
  DocumentPatch,
  DocumentRecord,
  EventSink,
  Json,
  LockGuard,
  Op,
  OperationRecord,
  Path,
} from "./model.ts";
import type { CommitRequest, DedupeEntry, DocumentHead, DocumentStore, Snapshot } from "./store.ts";

/** Options for {@link DocumentManager}. */
export interface DocumentManagerOptions {
  /** Time source for timestamps (default: the wall clock). */
  clock?: { now(): number };
  /** Where events go after commit (default: nowhere). */
  events?: EventSink;
  /** Lock table consulted before every write (default: no locks). */
  locks?: LockGuard;
  /** Size limits (defaults in `limits.ts`). */
  limits?: Partial<Limits>;
  /** Store a snapshot every N versions (default 100). */
  snapshotEvery?: number;
  /** Documents kept loaded in memory (least recently used are unloaded; default 1000). */
  maxCachedDocuments?: number;
  /** Ops per document kept in memory for transforms and resend detection (default 1000). */
  recentOps?: number;
  /** How often a lost commit race is retried before failing with ABORTED (default 20). */
  maxRetries?: number;
  /**
   * Other processes commit to the same store (etcd mode): a request whose base version is
   * ahead of a cached document reloads it once before it is refused (default false).
   */
  sharedStore?: boolean;
}

/** Counters of {@link DocumentManager.stats}. */
export interface DocumentStats {
  documents: number;
  operations: number;
  conflicts: number;
  openConflicts: number;
  /** Transform calls made by this manager since it started. */
  transforms: number;
}

/** What a page of history holds. */
export interface HistoryPage {
  operations: OperationRecord[];
  nextPageToken: string;
  /** True when the requested range is no longer stored (reload the document instead). */
  historyGone?: boolean;
}

/** The in-memory state of a loaded document. */
interface DocState {
  /** Head including uncommitted (in-flight) changes. */
  head: DocumentHead;
  content: Json;
  /** Upper bound of the content's JSON size; recomputed exactly when it passes the limit. */
  contentBytes: number;
  committedHead: DocumentHead;
  committedContent: Json;
  /** Ops with versions (recentStart, head.version], committed or in flight. */
  recent: OperationRecord[];
  recentStart: number;
  /** Dedupe entries of ops in `recent` (and held ops seen while loaded). */
  keys: Map<string, DedupeEntry>;
  evicted: boolean;
}

/** One prepared change of a document, waiting for its commit. */
interface Prepared<T> {
  ops: OperationRecord[];
  dedupe: DedupeEntry[];
  conflicts: ConflictRecord[];
  snapshots: Snapshot[];
  events: DocEvent[];
  /** Head and content after this change (for the committed view). */
  head: DocumentHead;
  content: Json;
  result: T;
}

/** A call against one document, re-runnable from scratch after a lost commit race. */
interface Work<T> {
  documentId: string;
  /** Runs in the document's turn on fresh state; changes state; null = answered, nothing to commit. */
  prepare(state: DocState): Promise<Prepared<T> | { immediate: T }>;
  attempts: number;
  resolve(value: T): void;
  reject(error: unknown): void;
  /** In-flight dedupe key to release when settled. */
  key?: string;
}

interface DocBatch {
  state: DocState;
  items: { work: Work<unknown>; prepared: Prepared<unknown> }[];
}

const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;
const RESOLUTION_SESSION = "conflict-resolution";
/** Most microtask turns a commit waits for calls still being prepared. */
const YIELD_TURNS = 1000;
/** Batches smaller than this wait (briefly) for calls still being prepared. */
const SMALL_BATCH = 256;
/** Turns without a call being prepared or joining the batch after which a commit goes. */
const QUIET_TURNS = 16;
/**
 * Group commits in flight at once. The store runs them one after the other, but while one
 * is being written the next batch (other documents) is already built and queued, and the
 * first one's answers go out meanwhile, so an op rarely waits for a whole unrelated commit.
 */
const MAX_COMMITS_IN_FLIGHT = 2;

/** Document engine; see the module docs. */
export class DocumentManager {
  #store: DocumentStore;
  #clock: { now(): number };
  #events: EventSink | undefined;
  #locks: LockGuard | undefined;
  #limits: Limits;
  #snapshotEvery: number;
  #maxCached: number;
  #recentOps: number;
  #maxRetries: number;
  #sharedStore: boolean;
  #docs = new Map<string, DocState>();
  #loading = new Map<string, Promise<DocState>>();
  #turns = new Map<string, Promise<void>>();
  #inflight = new Map<string, Map<string, Promise<ApplyResult>>>();
  #batch = new Map<string, DocBatch>();
  /** Group commits in flight. */
  #flushing = new Set<Promise<void>>();
  /** Documents with a commit in flight: their next batch waits for it (it needs its outcome). */
  #committing = new Set<string>();
  #flushScheduled = false;
  /** A flush is waiting for calls being prepared: new batches join it, no second one starts. */
  #gathering = false;
  /** Calls queued or running in a document turn, not yet in a batch or answered. */
  #preparing = 0;
  /** Items in `#batch`. */
  #batchedItems = 0;
  #transforms = 0;
  #closed = false;
  #background = new Set<Promise<unknown>>();

  /**
   * @throws {RangeError} for out-of-range limits or options
   */
  constructor(store: DocumentStore, options: DocumentManagerOptions = {}) {
    this.#store = store;
    this.#clock = options.clock ?? systemClock;
    this.#events = options.events;
    this.#locks = options.locks;
    this.#limits = resolveLimits(options.limits);
    this.#snapshotEvery = positive(options.snapshotEvery ?? 100, "snapshotEvery");
    this.#maxCached = positive(options.maxCachedDocuments ?? 1000, "maxCachedDocuments");
    this.#recentOps = positive(options.recentOps ?? 1000, "recentOps");
    this.#maxRetries = positive(options.maxRetries ?? 20, "maxRetries");
    this.#sharedStore = options.sharedStore ?? false;
  }

  /**
   * Drop the cached copy of a document another process committed past (`version` is the
   * version it reached); the next call reloads it from the store. Ignored while this
   * manager has changes of the document in flight: their commit fails and reloads anyway.
   */
  invalidate(documentId: string, version: number): void {
    const state = this.#docs.get(documentId);
    if (state === undefined || state.committedHead.version >= version) return;
    if (
      this.#turns.has(documentId) || this.#batch.has(documentId) ||
      this.#committing.has(documentId)
    ) {
      return;
    }
    this.#evict(documentId);
  }

  /** The limits in force. */
  get limits(): Readonly<Limits> {
    return this.#limits;
  }

  /**
   * Create a document owned by `actorId` at version 0.
   * @throws {AppError} INVALID_ARGUMENT (bad field, named), RESOURCE_EXHAUSTED (a size limit)
   */
  async create(actorId: string, input: CreateDocumentInput): Promise<DocumentRecord> {
    this.#assertOpen();
    const actor = readName(actorId, "actorId", this.#limits);
    const valid = readCreateInput(input, this.#limits);
    checkContentSize(valid.content, this.#limits);
    const now = this.#clock.now();
    const head: DocumentHead = {
      id: newId(),
      name: valid.name,
      type: valid.type,
      state: "active",
      ownerId: actor,
      permissions: valid.permissions,
      version: 0,
      createdAt: now,
      updatedAt: now,
      metadata: valid.metadata,
      conflictStrategy: valid.conflictStrategy,
    };
    await this.#store.createDocument(head, valid.content);
    return { ...structuredClone(head), content: structuredClone(valid.content) };
  }

  /**
   * A document as committed, or as it was at `atVersion` (nearest snapshot + replay).
   * @throws {AppError} NOT_FOUND (unknown or deleted), PERMISSION_DENIED, FAILED_PRECONDITION
   *   (`atVersion` ahead of the document)
   */
  async get(actorId: string, documentId: string, atVersion?: number): Promise<DocumentRecord> {
    this.#assertOpen();
    const id = readDocumentId(documentId);
    const actor = readName(actorId, "actorId", this.#limits);
    const state = await this.#state(id);
    this.#assertRead(state.committedHead, actor);
    const head = state.committedHead;
    if (atVersion === undefined || atVersion === head.version) {
      return { ...structuredClone(head), content: structuredClone(state.committedContent) };
    }
    const version = readVersion(atVersion, "atVersion");
    if (version > head.version) {
      throw new AppError(
        "FAILED_PRECONDITION",
        `Version ${version} is ahead of document ${id} (version ${head.version})`,
      );
    }
    const content = await this.#contentAt(id, version);
    return { ...structuredClone(head), version, content };
  }

  /**
   * The committed document if `actorId` may read it.
   * @throws {AppError} NOT_FOUND, PERMISSION_DENIED
   */
  async assertCanRead(actorId: string, documentId: string): Promise<DocumentRecord> {
    return await this.get(actorId, documentId);
  }

  /**
   * Change attributes (owner only). Setting state "deleted" is the same as {@link delete}.
   * @throws {AppError} NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT, RESOURCE_EXHAUSTED
   */
  async update(actorId: string, documentId: string, patch: DocumentPatch): Promise<DocumentRecord> {
    this.#assertOpen();
    const id = readDocumentId(documentId);
    const actor = readName(actorId, "actorId", this.#limits);
    const valid = readPatch(patch, this.#limits);
    return await this.#run<DocumentRecord>(id, (state) => {
      this.#assertOwner(state.head, actor);
      const now = this.#clock.now();
      const head: DocumentHead = { ...state.head, ...structuredClone(valid), updatedAt: now };
      state.head = head;
      const record: DocumentRecord = {
        ...structuredClone(head),
        content: structuredClone(state.content),
      };
      return Promise.resolve({
        ops: [],
        dedupe: [],
        conflicts: [],
        snapshots: [],
        events: [{
          type: "document_updated",
          documentId: id,
          version: head.version,
          timestamp: now,
          userId: actor,
          document: record,
        }],
        head,
        content: state.content,
        result: record,
      });
    });
  }

  /**
   * Delete a document (owner only): it becomes a tombstone, unreadable and unwritable.
   * @throws {AppError} NOT_FOUND, PERMISSION_DENIED
   */
  async delete(actorId: string, documentId: string): Promise<void> {
    await this.update(actorId, documentId, { state: "deleted" });
  }

  /**
   * Documents `actorId` may read, in id order, without content (`content` is null).
   * Deleted documents are listed only when `filter.state` is "deleted" (owner's own).
   * @throws {AppError} INVALID_ARGUMENT (bad page size or token)
   */
  async list(
    actorId: string,
    filter: DocumentFilter,
    page: { pageSize?: number; pageToken?: string },
  ): Promise<{ documents: DocumentRecord[]; nextPageToken: string }> {
    this.#assertOpen();
    const actor = readName(actorId, "actorId", this.#limits);
    const pageSize = readPageSize(page.pageSize);
    let after = page.pageToken ? readToken(page.pageToken, "d") : undefined;
    const documents: DocumentRecord[] = [];
    for (;;) {
      const heads = await this.#store.listHeads(
        after === undefined ? { limit: 200 } : { limit: 200, after },
      );
      for (const head of heads) {
        after = head.id;
        if (!this.#canRead(head, actor)) continue;
        if (filter.ownerId !== undefined && head.ownerId !== filter.ownerId) continue;
        if (filter.type !== undefined && head.type !== filter.type) continue;
        if (filter.state === undefined ? head.state === "deleted" : head.state !== filter.state) {
          continue;
        }
        documents.push({ ...head, content: null });
        if (documents.length === pageSize) {
          return { documents, nextPageToken: `d:${head.id}` };
        }
      }
      if (heads.length < 200) return { documents, nextPageToken: "" };
    }
  }

  /**
   * Apply an op made against `baseVersion`: see the module docs. Resolves after the op is
   * durable. A resend (same session and client op id) resolves with the first result and
   * `duplicate: true`.
   * @throws {AppError} INVALID_ARGUMENT (malformed op or field), FAILED_PRECONDITION (version
   *   ahead, path missing, type mismatch, locked path, archived document), NOT_FOUND,
   *   PERMISSION_DENIED, RESOURCE_EXHAUSTED (size limits), ABORTED (lost too many races)
   */
  async apply(actorId: string, input: ApplyInput): Promise<ApplyResult> {
    this.#assertOpen();
    const actor = readName(actorId, "actorId", this.#limits);
    if (typeof input !== "object" || input === null) {
      throw new AppError("INVALID_ARGUMENT", "Invalid input: expected an object");
    }
    const id = readDocumentId(input.documentId);
    const baseVersion = readVersion(input.baseVersion, "baseVersion");
    const sessionId = readName(input.sessionId, "sessionId", this.#limits);
    const clientOpId = readName(input.clientOpId, "clientOpId", this.#limits);
    const op = readOp(input.op, this.#limits);
    const opBytes = checkOpSize(op, this.#limits);
    const key = dedupeKey(sessionId, clientOpId);
    const inflight = this.#inflight.get(id)?.get(key);
    if (inflight !== undefined) {
      return markDuplicate(await inflight);
    }
    const submit = { actor, id, baseVersion, sessionId, clientOpId, op, opBytes };
    return await this.#run<ApplyResult>(
      id,
      (state) => this.#prepareApply(state, submit),
      key,
    );
  }

  async #prepareApply(
    state: DocState,
    submit: {
      actor: string;
      id: string;
      baseVersion: number;
      sessionId: string;
      clientOpId: string;
      op: Op;
      /** JSON size of `op`, when known. */
      opBytes?: number;
      /** Resolution ops: transform with the incoming side winning, ignore collisions. */
      resolution?: { conflicts: ConflictRecord[]; target: Json | undefined; path: Path };
    },
  ): Promise<Prepared<ApplyResult> | { immediate: ApplyResult }> {
    const head = state.head;
    if (submit.resolution === undefined) this.#assertWrite(head, submit.actor);
    const key = dedupeKey(submit.sessionId, submit.clientOpId);
    // Resend de-duplication. Ops in memory answer from `keys`; held ops and ops with
    // conflicts are indexed in the store; any other applied op is found, as ShareDB finds
    // it, in the log after the base version it was sent at (a resend carries that version
    // or an earlier one: a client cannot know its op's version before its ack).
    let known = state.keys.get(key) ??
      (submit.baseVersion < state.recentStart || head.conflictStrategy === "manual" ||
          submit.resolution !== undefined
        ? await this.#store.findDedupe(submit.id, submit.sessionId, submit.clientOpId)
        : null);
    const behind = head.version - submit.baseVersion;
    if (known === null && behind > this.#limits.maxOpsBehind) {
      // Checked before any history is read or transformed: a flood of stale ops costs little.
      throw new AppError(
        "FAILED_PRECONDITION",
        `Operation base version ${submit.baseVersion} is ${behind} versions behind document ${submit.id} (limit maxOpsBehind ${this.#limits.maxOpsBehind}): reload the document`,
        {
          details: {
            baseVersion: submit.baseVersion,
            version: head.version,
            maxOpsBehind: this.#limits.maxOpsBehind,
          },
        },
      );
    }
    let since: OperationRecord[] | undefined;
    if (known === null && submit.baseVersion < state.recentStart) {
      since = await this.#opsSince(state, submit.baseVersion);
      const applied = since.find((o) =>
        o.sessionId === submit.sessionId && o.clientOpId === submit.clientOpId
      );
      if (applied !== undefined) known = appliedEntry(applied);
    }
    if (known !== null) return { immediate: await this.#duplicateResult(state, known) };
    if (submit.baseVersion > head.version) {
      throw new AppError(
        "FAILED_PRECONDITION",
        `Operation base version ${submit.baseVersion} is ahead of document ${submit.id} (version ${head.version})`,
        { details: { baseVersion: submit.baseVersion, version: head.version } },
      );
    }
    const now = this.#clock.now();
    const operationId = newId();
    const strategy = head.conflictStrategy;
    const incomingWins = submit.resolution !== undefined || strategy === "lww";
    let op = submit.op;
    const collided: {
      applied: OperationRecord;
      path: Path;
      appliedValue: Json | undefined;
      incomingValue: Json | undefined;
    }[] = [];
    if (submit.baseVersion < head.version) {
      // Ops still in memory are read without an await (this runs for every stale op).
      since ??= submit.baseVersion >= state.recentStart
        ? recentSince(state, submit.baseVersion)
        : await this.#opsSince(state, submit.baseVersion);
      for (const applied of since) {
        const result = transformWithCollisions(op, applied.op, incomingWins);
        this.#transforms++;
        op = result.op;
        if (submit.resolution !== undefined || result.collisions.length === 0) continue;
        for (const c of result.collisions) {
          collided.push({
            applied,
            path: c.path,
            appliedValue: c.appliedValue,
            incomingValue: c.incomingValue,
          });
        }
        if (strategy === "manual" && collided.length > 0) break;
      }
    }
    const record: OperationRecord = {
      id: operationId,
      documentId: submit.id,
      baseVersion: submit.baseVersion,
      version: head.version + 1,
      authorId: submit.actor,
      sessionId: submit.sessionId,
      clientOpId: submit.clientOpId,
      timestamp: now,
      op,
    };
    if (strategy === "manual" && collided.length > 0) {
      // Hold the op: not applied, an open conflict per collision until someone resolves it.
      const held: OperationRecord = { ...record, version: 0, op: submit.op };
      const conflicts = collided.map((c): ConflictRecord => ({
        id: newId(),
        documentId: submit.id,
        path: c.path,
        strategy,
        state: "open",
        applied: c.applied,
        incoming: held,
        appliedValue: c.appliedValue,
        incomingValue: c.incomingValue,
        createdAt: now,
      }));
      const dedupe: DedupeEntry = {
        sessionId: submit.sessionId,
        clientOpId: submit.clientOpId,
        operationId,
        version: 0,
        held: true,
        conflictIds: conflicts.map((c) => c.id),
      };
      state.keys.set(key, dedupe);
      return {
        ops: [],
        dedupe: [dedupe],
        conflicts,
        snapshots: [],
        events: conflicts.map((conflict) => ({
          type: "conflict_detected",
          documentId: submit.id,
          version: head.version,
          timestamp: now,
          userId: submit.actor,
          conflict,
        })),
        head,
        content: state.content,
        result: { operation: held, version: head.version, duplicate: false, held: true, conflicts },
      };
    }
    if (this.#locks !== undefined && op.length > 0) {
      this.#locks.assertCanWrite(submit.id, submit.actor, op.map((c) => c.path), now);
    }
    let content: Json;
    try {
      content = applyOp(state.content, op);
    } catch (error) {
      throw opError(error);
    }
    let contentBytes = state.contentBytes +
      (op === submit.op && submit.opBytes !== undefined ? submit.opBytes : jsonBytes(op));
    if (contentBytes > this.#limits.maxContentBytes) {
      contentBytes = checkContentSize(content, this.#limits);
    }
    const conflicts = collided.map((c): ConflictRecord => ({
      id: newId(),
      documentId: submit.id,
      path: c.path,
      strategy,
      state: "auto_resolved",
      applied: c.applied,
      incoming: record,
      appliedValue: c.appliedValue,
      incomingValue: c.incomingValue,
      ...optional("resolvedValue", strategy === "lww" ? c.incomingValue : c.appliedValue),
      createdAt: now,
    }));
    const resolved = submit.resolution === undefined ? [] : submit.resolution.conflicts.map((
      c,
    ): ConflictRecord => ({
      ...c,
      state: "resolved",
      ...optional("resolvedValue", submit.resolution!.target),
      resolvedAt: now,
      resolvedBy: submit.actor,
    }));
    const dedupe: DedupeEntry = {
      sessionId: submit.sessionId,
      clientOpId: submit.clientOpId,
      operationId,
      version: record.version,
      held: false,
      conflictIds: conflicts.map((c) => c.id),
    };
    const newHead: DocumentHead = { ...head, version: record.version, updatedAt: now };
    state.head = newHead;
    state.content = content;
    state.contentBytes = contentBytes;
    state.recent.push(record);
    state.keys.set(key, dedupe);
    const events: DocEvent[] = [{
      type: "operation_applied",
      documentId: submit.id,
      version: record.version,
      timestamp: now,
      userId: submit.actor,
      operation: record,
    }];
    for (const conflict of conflicts) {
      events.push({
        type: "conflict_detected",
        documentId: submit.id,
        version: record.version,
        timestamp: now,
        userId: submit.actor,
        conflict,
      });
    }
    for (const conflict of resolved) {
      events.push({
        type: "conflict_resolved",
        documentId: submit.id,
        version: record.version,
        timestamp: now,
        userId: submit.actor,
        conflict,
      });
    }
    // The store indexes only what the op log cannot answer (see above).
    const indexed = conflicts.length > 0 || submit.resolution !== undefined;
    // Read-only after this point (the commit copies them out), so the two can share one array.
    const allConflicts = resolved.length === 0 ? conflicts : [...conflicts, ...resolved];
    return {
      ops: [record],
      dedupe: indexed ? [dedupe] : [],
      conflicts: allConflicts,
      snapshots: record.version % this.#snapshotEvery === 0
        ? [{ version: record.version, content }]
        : [],
      events,
      head: newHead,
      content,
      result: {
        operation: record,
        version: record.version,
        duplicate: false,
        held: false,
        conflicts: allConflicts,
      },
    };
  }

  /** The original result of an op seen before, marked duplicate. */
  async #duplicateResult(state: DocState, entry: DedupeEntry): Promise<ApplyResult> {
    const conflicts = (await Promise.all(
      entry.conflictIds.map((cid) => this.#store.getConflict(state.head.id, cid)),
    )).filter((c): c is ConflictRecord => c !== null);
    if (entry.held) {
      const incoming = conflicts[0]?.incoming;
      if (incoming === undefined) {
        throw new AppError("DATA_LOSS", `Held operation ${entry.operationId} has no conflict`);
      }
      return {
        operation: incoming,
        version: state.head.version,
        duplicate: true,
        held: true,
        conflicts,
      };
    }
    const operation = state.recent.find((o) => o.version === entry.version) ??
      (await this.#store.getOps(state.head.id, entry.version - 1, entry.version))[0];
    if (operation === undefined) {
      throw new AppError("DATA_LOSS", `Operation ${entry.operationId} is missing from history`);
    }
    return { operation, version: entry.version, duplicate: true, held: false, conflicts };
  }

  /** Ops with versions (from, head.version], from memory when possible. */
  async #opsSince(state: DocState, from: number): Promise<OperationRecord[]> {
    const older: OperationRecord[] = [];
    // A commit finishing while the store is read may drop more ops from memory: read on.
    for (let next = from; next < state.recentStart;) {
      const until = state.recentStart;
      const ops = await this.#store.getOps(state.head.id, next, until);
      if (ops.length !== until - next) {
        throw new AppError(
          "FAILED_PRECONDITION",
          `History of document ${state.head.id} since version ${from} is gone: reload the document`,
        );
      }
      for (const op of ops) older.push(op);
      next = until;
    }
    const recent = recentSince(state, from);
    return older.length === 0 ? recent : [...older, ...recent];
  }

  /**
   * Ops with `fromVersion < version <= toVersion` (default: up to the current version).
   * @throws {AppError} NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT (bad range or token)
   */
  async history(
    actorId: string,
    documentId: string,
    range: { fromVersion: number; toVersion?: number; pageSize?: number; pageToken?: string },
  ): Promise<HistoryPage> {
    this.#assertOpen();
    const id = readDocumentId(documentId);
    const actor = readName(actorId, "actorId", this.#limits);
    const state = await this.#state(id);
    this.#assertRead(state.committedHead, actor);
    const current = state.committedHead.version;
    let from = readVersion(range.fromVersion, "fromVersion");
    const to = range.toVersion === undefined || range.toVersion === 0
      ? current
      : Math.min(readVersion(range.toVersion, "toVersion"), current);
    if (range.pageToken) {
      const token = Number(readToken(range.pageToken, "v"));
      if (!Number.isSafeInteger(token) || token < from) {
        throw new AppError("INVALID_ARGUMENT", "Invalid pageToken", {
          details: { field: "pageToken" },
        });
      }
      from = token;
    }
    const pageSize = readPageSize(range.pageSize);
    if (from >= to) return { operations: [], nextPageToken: "" };
    const operations = await this.#store.getOps(id, from, to, pageSize);
    const last = operations[operations.length - 1]?.version ?? to;
    return { operations, nextPageToken: last < to ? `v:${last}` : "" };
  }

  /**
   * A document's conflicts (open ones unless `includeResolved`), oldest first.
   * @throws {AppError} NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT
   */
  async listConflicts(
    actorId: string,
    documentId: string,
    options: { includeResolved?: boolean; pageSize?: number; pageToken?: string } = {},
  ): Promise<{ conflicts: ConflictRecord[]; nextPageToken: string }> {
    this.#assertOpen();
    const id = readDocumentId(documentId);
    const actor = readName(actorId, "actorId", this.#limits);
    const state = await this.#state(id);
    this.#assertRead(state.committedHead, actor);
    const pageSize = readPageSize(options.pageSize);
    const after = options.pageToken ? readToken(options.pageToken, "c") : undefined;
    const conflicts = await this.#store.listConflicts(id, {
      limit: pageSize + 1,
      includeResolved: options.includeResolved ?? false,
      ...(after === undefined ? {} : { after }),
    });
    const more = conflicts.length > pageSize;
    const page = conflicts.slice(0, pageSize);
    return { conflicts: page, nextPageToken: more ? `c:${page[page.length - 1]!.id}` : "" };
  }

  /**
   * Settle a conflict: keep the applied side, take the incoming side, or supply a value.
   * The resolution is applied as a new op by the resolver (when the content changes),
   * committed together with the conflict's new state. For a held op (manual strategy),
   * "incoming" applies the whole held op, transformed to the current version.
   * @throws {AppError} NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION (already resolved,
   *   locked path), INVALID_ARGUMENT
   */
  async resolveConflict(
    actorId: string,
    documentId: string,
    conflictId: string,
    resolution: ConflictResolution,
  ): Promise<{ conflict: ConflictRecord; operation?: OperationRecord }> {
    this.#assertOpen();
    const id = readDocumentId(documentId);
    const actor = readName(actorId, "actorId", this.#limits);
    const cid = readDocumentId(conflictId, "conflictId");
    const choice = readResolution(resolution);
    const key = dedupeKey(RESOLUTION_SESSION, cid);
    const inflight = this.#inflight.get(id)?.get(key);
    if (inflight !== undefined) await inflight.catch(() => {});
    const result = await this.#run<ApplyResult>(id, async (state) => {
      this.#assertWrite(state.head, actor);
      const conflict = await this.#store.getConflict(id, cid);
      if (conflict === null) throw new AppError("NOT_FOUND", `Conflict ${cid} not found`);
      if (conflict.state === "resolved") {
        throw new AppError("FAILED_PRECONDITION", `Conflict ${cid} is already resolved`);
      }
      // Every open conflict of the same held op is settled together.
      const siblings = conflict.state === "open"
        ? (await this.#store.listConflicts(id, { limit: MAX_PAGE, includeResolved: false }))
          .filter((c) => c.incoming.id === conflict.incoming.id)
        : [conflict];
      const target = "value" in choice
        ? choice.value
        : choice.side === "applied"
        ? conflict.appliedValue
        : conflict.incomingValue;
      let op: Op;
      let base: number;
      if (conflict.state === "open" && "side" in choice && choice.side === "incoming") {
        op = conflict.incoming.op;
        base = conflict.incoming.baseVersion;
      } else {
        op = [{
          path: conflict.path,
          action: target === undefined ? { type: "delete" } : { type: "set", value: target },
        }];
        base = conflict.applied.version;
      }
      // Bring the op to the current version (the resolution wins every collision).
      let current = op;
      for (const applied of await this.#opsSince(state, Math.min(base, state.head.version))) {
        current = transformWithCollisions(current, applied.op, true).op;
        this.#transforms++;
      }
      const wholeHeldOp = conflict.state === "open" && "side" in choice &&
        choice.side === "incoming";
      const unchanged = current.length === 0 ||
        (!wholeHeldOp && current.length === 1 &&
          jsonEqual(valueAt(state.content, current[0]!.path), target));
      const settled = siblings.map((c): ConflictRecord => ({
        ...c,
        state: "resolved",
        ...optional("resolvedValue", target),
        resolvedAt: this.#clock.now(),
        resolvedBy: actor,
      }));
      if (
        unchanged || (conflict.state === "open" && "side" in choice && choice.side === "applied")
      ) {
        const now = this.#clock.now();
        return {
          ops: [],
          dedupe: [],
          conflicts: settled,
          snapshots: [],
          events: settled.map((c) => ({
            type: "conflict_resolved" as const,
            documentId: id,
            version: state.head.version,
            timestamp: now,
            userId: actor,
            conflict: c,
          })),
          head: state.head,
          content: state.content,
          result: {
            operation: conflict.incoming,
            version: state.head.version,
            duplicate: false,
            held: false,
            conflicts: settled,
          },
        };
      }
      return await this.#prepareApply(state, {
        actor,
        id,
        baseVersion: state.head.version,
        sessionId: RESOLUTION_SESSION,
        clientOpId: cid,
        op: current,
        resolution: { conflicts: siblings, target, path: conflict.path },
      });
    }, key);
    const conflict = result.conflicts.find((c) => c.id === cid) ??
      (await this.#store.getConflict(id, cid))!;
    return result.operation.version > 0 && result.operation.sessionId === RESOLUTION_SESSION
      ? { conflict, operation: result.operation }
      : { conflict };
  }

  /** Totals over the store plus this manager's transform count. */
  async stats(): Promise<DocumentStats> {
    this.#assertOpen();
    await Promise.allSettled(this.#flushing);
    return { ...(await this.#store.counts()), transforms: this.#transforms };
  }

  /** Number of documents loaded in memory. */
  get loadedDocuments(): number {
    return this.#docs.size;
  }

  /** Wait for pending commits and snapshots, then refuse further calls. The store stays open. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#drain();
    this.#closed = true;
    await this.#drain();
  }

  async #drain(): Promise<void> {
    for (;;) {
      const pending = [...this.#turns.values(), ...this.#background, ...this.#flushing];
      if (pending.length === 0 && this.#batch.size === 0) return;
      if (pending.length === 0) this.#scheduleFlush();
      await Promise.allSettled(pending);
      await Promise.resolve();
    }
  }

  // ---- loading and the per-document turn ----

  async #state(id: string): Promise<DocState> {
    const cached = this.#cachedState(id);
    if (cached !== undefined) return cached;
    let loading = this.#loading.get(id);
    if (loading === undefined) {
      loading = this.#load(id).finally(() => this.#loading.delete(id));
      this.#loading.set(id, loading);
    }
    return await loading;
  }

  /** The document's state if it is in memory (marked most recently used), without an await. */
  #cachedState(id: string): DocState | undefined {
    const cached = this.#docs.get(id);
    if (cached !== undefined) {
      this.#docs.delete(id);
      this.#docs.set(id, cached);
    }
    return cached;
  }

  async #load(id: string): Promise<DocState> {
    const head = await this.#store.getHead(id);
    if (head === null || head.state === "deleted") {
      throw new AppError("NOT_FOUND", `Document ${id} not found`);
    }
    const snapshot = await this.#store.getSnapshot(id, head.version);
    if (snapshot === null) throw new AppError("DATA_LOSS", `Document ${id} has no snapshot`);
    const ops = await this.#store.getOps(id, snapshot.version, head.version);
    if (ops.length !== head.version - snapshot.version) {
      throw new AppError("DATA_LOSS", `History of document ${id} is incomplete`);
    }
    let content = snapshot.content;
    for (const op of ops) content = applyOp(content, op.op);
    const keys = new Map<string, DedupeEntry>();
    for (const op of ops) keys.set(dedupeKey(op.sessionId, op.clientOpId), appliedEntry(op));
    const state: DocState = {
      head,
      content,
      contentBytes: jsonBytes(content),
      committedHead: head,
      committedContent: content,
      recent: ops,
      recentStart: snapshot.version,
      keys,
      evicted: false,
    };
    this.#docs.set(id, state);
    this.#evictIdle();
    return state;
  }

  #evictIdle(): void {
    if (this.#docs.size <= this.#maxCached) return;
    for (const [id, state] of this.#docs) {
      if (this.#docs.size <= this.#maxCached) break;
      if (
        this.#turns.has(id) || this.#batch.has(id) || this.#committing.has(id) ||
        state.head.version !== state.committedHead.version
      ) {
        continue;
      }
      state.evicted = true;
      this.#docs.delete(id);
    }
  }

  #evict(id: string): void {
    const state = this.#docs.get(id);
    if (state !== undefined) state.evicted = true;
    this.#docs.delete(id);
  }

  /** Run `prepare` in the document's turn, queue its changes for commit, resolve after commit. */
  #run<T>(
    id: string,
    prepare: (state: DocState) => Promise<Prepared<T> | { immediate: T }>,
    key?: string,
  ): Promise<T> {
    const { promise, resolve, reject } = Promise.withResolvers<T>();
    const work: Work<T> = { documentId: id, prepare, attempts: 0, resolve, reject };
    if (key !== undefined) {
      work.key = key;
      let map = this.#inflight.get(id);
      if (map === undefined) this.#inflight.set(id, map = new Map());
      map.set(key, promise as Promise<unknown> as Promise<ApplyResult>);
      const release = () => this.#release(id, key);
      promise.then(release, release);
    }
    this.#enqueue(work as Work<unknown>);
    return promise;
  }

  #release(id: string, key: string): void {
    const map = this.#inflight.get(id);
    map?.delete(key);
    if (map?.size === 0) this.#inflight.delete(id);
  }

  #enqueue(work: Work<unknown>): void {
    const id = work.documentId;
    const previous = this.#turns.get(id) ?? Promise.resolve();
    this.#preparing++;
    const turn = previous.then(() => this.#prepareWork(work));
    this.#turns.set(id, turn);
    // #prepareWork never rejects (it rejects the work instead): one `then` does the bookkeeping
    // where two `finally` cost extra promises and closures per op.
    turn.then(() => {
      this.#preparing--;
      if (this.#turns.get(id) === turn) this.#turns.delete(id);
    });
  }

  async #prepareWork(work: Work<unknown>): Promise<void> {
    try {
      for (let reloaded = false;;) {
        const state = this.#cachedState(work.documentId) ?? await this.#state(work.documentId);
        let prepared;
        try {
          prepared = await work.prepare(state);
        } catch (error) {
          // With a shared store the cached copy may be behind: reload once, then decide.
          const details = error instanceof AppError && error.status === "FAILED_PRECONDITION"
            ? error.details as { baseVersion?: number; version?: number } | null
            : null;
          const ahead = details?.baseVersion !== undefined && details.version !== undefined &&
            details.baseVersion > details.version;
          if (!this.#sharedStore || reloaded || !ahead) throw error;
          reloaded = true;
          this.#evict(work.documentId);
          continue;
        }
        if ("immediate" in prepared) {
          work.resolve(prepared.immediate);
          return;
        }
        if (state.evicted) {
          this.#evict(work.documentId);
          continue;
        }
        let batch = this.#batch.get(work.documentId);
        if (batch === undefined) this.#batch.set(work.documentId, batch = { state, items: [] });
        batch.items.push({ work, prepared });
        this.#batchedItems++;
        this.#scheduleFlush();
        return;
      }
    } catch (error) {
      work.reject(toAppError(error));
    }
  }

  // ---- group commit ----

  #scheduleFlush(): void {
    if (
      this.#flushScheduled || this.#gathering || this.#flushing.size >= MAX_COMMITS_IN_FLIGHT
    ) {
      return;
    }
    this.#flushScheduled = true;
    queueMicrotask(() => {
      this.#flushScheduled = false;
      if (
        this.#gathering || this.#flushing.size >= MAX_COMMITS_IN_FLIGHT ||
        !this.#hasCommittable()
      ) {
        return;
      }
      const flushing: Promise<void> = this.#flush().finally(() => {
        this.#flushing.delete(flushing);
        if (this.#batch.size > 0) this.#scheduleFlush();
      });
      this.#flushing.add(flushing);
    });
  }

  /** Some batched document has no commit in flight. */
  #hasCommittable(): boolean {
    for (const id of this.#batch.keys()) if (!this.#committing.has(id)) return true;
    return false;
  }

  /** Take the batches of documents without a commit in flight, marking them in flight. */
  #takeCommittable(): DocBatch[] {
    const taken: DocBatch[] = [];
    for (const [id, batch] of this.#batch) {
      if (this.#committing.has(id)) continue;
      this.#batch.delete(id);
      this.#committing.add(id);
      this.#batchedItems -= batch.items.length;
      taken.push(batch);
    }
    return taken;
  }

  async #flush(): Promise<void> {
    // A small batch lets calls being prepared right now (typically the next ops of writers
    // whose acks just went out) join this commit instead of waiting a whole commit for the
    // next one: a bounded number of microtask turns, no timers. A large batch goes at once,
    // so preparing the next batch overlaps this commit.
    // Writers whose acks are still on their way back are not counted as preparing yet, so
    // the wait ends only after a few quiet turns (no call preparing, the batch not growing).
    this.#gathering = true;
    try {
      for (
        let i = 0, quiet = 0, seen = -1;
        i < YIELD_TURNS && quiet < QUIET_TURNS && this.#batchedItems < SMALL_BATCH;
        i++
      ) {
        const busy = this.#preparing > 0 || this.#batchedItems !== seen;
        quiet = busy ? 0 : quiet + 1;
        seen = this.#batchedItems;
        await Promise.resolve();
      }
    } finally {
      this.#gathering = false;
    }
    const batches = this.#takeCommittable();
    if (batches.length === 0) return; // all wait for commits in flight; those relaunch
    const ids = batches.map((batch) => batch.state.committedHead.id);
    try {
      await this.#commitBatches(batches);
    } finally {
      for (const id of ids) this.#committing.delete(id);
    }
  }

  async #commitBatches(batches: DocBatch[]): Promise<void> {
    const requests: CommitRequest[] = batches.map((batch) => {
      const last = batch.items[batch.items.length - 1]!.prepared;
      return {
        documentId: batch.state.committedHead.id,
        expectedVersion: batch.state.committedHead.version,
        head: last.head,
        ops: batch.items.flatMap((item) => item.prepared.ops),
        dedupe: batch.items.flatMap((item) => item.prepared.dedupe),
        conflicts: batch.items.flatMap((item) => item.prepared.conflicts),
      };
    });
    let outcomes: ("committed" | "version_conflict")[];
    try {
      outcomes = await this.#store.commit(requests);
    } catch (error) {
      // The store failed: whatever was written is found by resend de-duplication.
      for (const batch of batches) {
        this.#evict(batch.state.committedHead.id);
        for (const item of batch.items) item.work.reject(toAppError(error));
      }
      this.#requeueFollowers(batches.map((b) => b.state.committedHead.id));
      return;
    }
    const lost: string[] = [];
    batches.forEach((batch, i) => {
      const id = batch.state.committedHead.id;
      if (outcomes[i] === "committed") {
        const last = batch.items[batch.items.length - 1]!.prepared;
        batch.state.committedHead = last.head;
        batch.state.committedContent = last.content;
        this.#trimRecent(batch.state);
        for (const item of batch.items) {
          for (const event of item.prepared.events) this.#publish(event);
          item.work.resolve(item.prepared.result);
          for (const snapshot of item.prepared.snapshots) this.#saveSnapshot(id, snapshot);
        }
        return;
      }
      // Lost a race: reload and prepare every change of this document again.
      lost.push(id);
      this.#evict(id);
      for (const item of batch.items) this.#retry(item.work);
    });
    this.#requeueFollowers(lost);
  }

  /** Items queued on top of a document whose commit failed must be prepared again. */
  #requeueFollowers(ids: string[]): void {
    for (const id of ids) {
      const follower = this.#batch.get(id);
      if (follower === undefined) continue;
      this.#batch.delete(id);
      this.#batchedItems -= follower.items.length;
      for (const item of follower.items) this.#retry(item.work);
    }
  }

  #retry(work: Work<unknown>): void {
    work.attempts++;
    if (work.attempts > this.#maxRetries) {
      work.reject(
        new AppError("ABORTED", `Commit of document ${work.documentId} lost too many races`),
      );
      return;
    }
    this.#enqueue(work);
  }

  #trimRecent(state: DocState): void {
    const excess = state.recent.length - this.#recentOps;
    if (excess <= 0) return;
    // Only committed ops may leave memory: older ones are re-read from the store.
    const committed = state.committedHead.version - state.recentStart;
    const drop = Math.min(excess, committed);
    for (const op of state.recent.slice(0, drop)) {
      const key = dedupeKey(op.sessionId, op.clientOpId);
      if (state.keys.get(key)?.version === op.version) state.keys.delete(key);
    }
    state.recent.splice(0, drop);
    state.recentStart += drop;
  }

  #saveSnapshot(id: string, snapshot: Snapshot): void {
    const task = this.#store.putSnapshot(id, snapshot).catch(() => {
      // Snapshots are derived data: a failed one only costs replay time on the next load.
    });
    this.#background.add(task);
    task.finally(() => this.#background.delete(task));
  }

  #publish(event: DocEvent): void {
    try {
      this.#events?.publish(event);
    } catch {
      // A failing subscriber hub must not undo a committed op; the hub reports its own errors.
    }
  }

  async #contentAt(id: string, version: number): Promise<Json> {
    const snapshot = await this.#store.getSnapshot(id, version);
    if (snapshot === null) throw new AppError("DATA_LOSS", `Document ${id} has no snapshot`);
    const ops = await this.#store.getOps(id, snapshot.version, version);
    if (ops.length !== version - snapshot.version) {
      throw new AppError("DATA_LOSS", `History of document ${id} is incomplete`);
    }
    let content = snapshot.content;
    for (const op of ops) content = applyOp(content, op.op);
    return content;
  }

  // ---- permissions ----

  #canRead(head: DocumentHead, actor: string): boolean {
    const p = head.permissions;
    return head.ownerId === actor || p.publicRead || p.editors.includes(actor) ||
      p.viewers.includes(actor);
  }

  #assertRead(head: DocumentHead, actor: string): void {
    if (head.state === "deleted") throw new AppError("NOT_FOUND", `Document ${head.id} not found`);
    if (!this.#canRead(head, actor)) {
      throw new AppError("PERMISSION_DENIED", `User ${actor} may not read document ${head.id}`);
    }
  }

  #assertWrite(head: DocumentHead, actor: string): void {
    this.#assertRead(head, actor);
    if (head.ownerId !== actor && !head.permissions.editors.includes(actor)) {
      throw new AppError("PERMISSION_DENIED", `User ${actor} may not edit document ${head.id}`);
    }
    if (head.state === "archived") {
      throw new AppError("FAILED_PRECONDITION", `Document ${head.id} is archived`);
    }
  }

  #assertOwner(head: DocumentHead, actor: string): void {
    this.#assertRead(head, actor);
    if (head.ownerId !== actor) {
      throw new AppError(
        "PERMISSION_DENIED",
        `Only the owner may change document ${head.id}`,
      );
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new AppError("UNAVAILABLE", "Document manager is closed");
  }
}

function positive(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`Invalid ${name}: expected a positive integer`);
  }
  return value;
}

/** The ops in memory after version `from` (all of them when `from` is older). */
function recentSince(state: DocState, from: number): OperationRecord[] {
  return state.recent.slice(Math.max(0, from - state.recentStart));
}

function dedupeKey(sessionId: string, clientOpId: string): string {
  return `${sessionId}\u0000${clientOpId}`;
}

/** The de-duplication entry of an applied op, as its log record tells it. */
function appliedEntry(op: OperationRecord): DedupeEntry {
  return {
    sessionId: op.sessionId,
    clientOpId: op.clientOpId,
    operationId: op.id,
    version: op.version,
    held: false,
    conflictIds: [],
  };
}

function markDuplicate(result: ApplyResult): ApplyResult {
  return { ...result, duplicate: true };
}

function readOp(value: unknown, limits: Limits): Op {
  if (Array.isArray(value) && value.length > limits.maxComponentsPerOp) {
    throw new AppError(
      "INVALID_ARGUMENT",
      `Operation has ${value.length} components, over the limit maxComponentsPerOp=${limits.maxComponentsPerOp}`,
      { details: { limit: "maxComponentsPerOp", value: limits.maxComponentsPerOp } },
    );
  }
  try {
    return parseOp(value, { maxComponents: limits.maxComponentsPerOp });
  } catch (error) {
    throw opError(error);
  }
}

function opError(error: unknown): unknown {
  if (error instanceof OpError) {
    return new AppError(error.status, error.message, {
      cause: error,
      details: { path: error.path, component: error.component ?? null },
    });
  }
  return error;
}

function toAppError(error: unknown): AppError {
  return AppError.from(opError(error));
}

function readPageSize(value: number | undefined): number {
  if (value === undefined || value === 0) return DEFAULT_PAGE;
  if (!Number.isSafeInteger(value) || value < 1 || value > MAX_PAGE) {
    throw new AppError("INVALID_ARGUMENT", `Invalid pageSize: expected 1..${MAX_PAGE}`, {
      details: { field: "pageSize" },
    });
  }
  return value;
}

function readToken(token: string, kind: string): string {
  if (typeof token !== "string" || !token.startsWith(`${kind}:`) || token.length < 3) {
    throw new AppError("INVALID_ARGUMENT", "Invalid pageToken", {
      details: { field: "pageToken" },
    });
  }
  return token.slice(kind.length + 1);
}

function readResolution(value: ConflictResolution): ConflictResolution {
  if (typeof value === "object" && value !== null) {
    if ("side" in value && (value.side === "applied" || value.side === "incoming")) {
      return { side: value.side };
    }
    if ("value" in value) {
      return { value: structuredClone(value.value) };
    }
  }
  throw new AppError(
    "INVALID_ARGUMENT",
    "Invalid resolution: expected { side: applied | incoming } or { value }",
    { details: { field: "resolution" } },
  );
}

/** `{ [key]: value }`, or `{}` when value is undefined (exactOptionalPropertyTypes-friendly). */
function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
