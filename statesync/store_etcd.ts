/**
 * A {@link DocumentStore} on etcd v3: the distributed engine, shared by several StateSync
 * instances.
 *
 * Key layout under the configured prefix `P` (default `/aetherflow/statesync`); ids are
 * URI-encoded, numbers are zero-padded to 16 digits so keys sort numerically:
 * - `P/ver/<doc>` → the document's version as a decimal string: **the commit guard**. Every
 *   commit is a transaction comparing this value with the version the writer started from,
 *   so two instances can never both commit version N.
 * - `P/head/<doc>` → the head (document attributes and version) as JSON
 * - `P/op/<doc>/<version>` → one operation (compact JSON); the prefix `P/op/<doc>/` is what
 *   cross-instance event fan-out watches (`events_etcd.ts`)
 * - `P/dedupe/<doc>/<session>/<clientOpId>` → the resend de-duplication entry (just the
 *   version for a plain applied op; the operation row has the rest)
 * - `P/conflict/<doc>/<id>` → `{state, record}`
 * - `P/snap/<doc>/<version>` → `{chunks, bytes}`, written after its chunks
 *   `P/snapchunk/<doc>/<version>/<i>` (256 KiB each), so a snapshot is visible only whole
 *
 * Transactions: etcd allows 128 operations per transaction level and 1.5 MiB per request.
 * A commit request is cut into units of at most 120 puts (usually one unit); units of
 * different documents travel as nested transactions inside one physical transaction, each
 * with its own version comparison, so one losing document never fails the others. A request
 * larger than one unit is written unit by unit, each checked on the version the previous one
 * left (like the Deno KV store): a crash in between leaves a consistent prefix.
 *
 * @example
 * ```ts
 * const etcd = await connectEtcd({ endpoints: ["http://127.0.0.1:2379"] });
 * const store = new EtcdDocumentStore(etcd, { ownsConnection: true });
 * const manager = new DocumentManager(store, {});
 * ```
 * @module
 */
import { Buffer } from "node:buffer";
import { AppError } from "../kernel/mod.ts";
import {
  etcdCompare,
  type EtcdConnection,
  type EtcdOp,
  etcdOp,
  etcdTxn,
  padNumber,
  prefixEnd,
} from "../kernel/etcd.ts";
import type { ConflictRecord, Json, OperationRecord } from "./model.ts";
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

/** Puts per unit (etcd's default --max-txn-ops is 128). */
const MAX_UNIT_OPS = 120;
/** Nested transactions per physical transaction. */
const MAX_UNITS_PER_TXN = 100;
/** Bytes per physical transaction (etcd's default --max-request-bytes is 1.5 MiB). */
const MAX_TXN_BYTES = 1_000_000;
const CHUNK_BYTES = 256 * 1024;
const PAGE = 1000;

/** Compact stored form of an op (document id and version live in the key). */
interface StoredOp {
  i: string;
  b: number;
  a: string;
  s: string;
  c: string;
  t: number;
  o: OperationRecord["op"];
}

/** One document's slice of a request that fits one (nested) transaction. */
interface Unit {
  request: number;
  documentId: string;
  expectedVersion: number;
  head: DocumentHead;
  puts: EtcdOp[];
  bytes: number;
}

/** Options for {@link EtcdDocumentStore}. */
export interface EtcdDocumentStoreOptions {
  /** Key prefix (default `<connection prefix>/statesync`). */
  prefix?: string;
  /** Close the etcd connection on {@link EtcdDocumentStore.close} (default false). */
  ownsConnection?: boolean;
}

/** A {@link DocumentStore} on etcd. */
export class EtcdDocumentStore implements DocumentStore, AsyncDisposable {
  #etcd: EtcdConnection;
  #prefix: string;
  #owns: boolean;
  #closed = false;

  /** Use an open etcd connection (see `connectEtcd`). */
  constructor(etcd: EtcdConnection, options: EtcdDocumentStoreOptions = {}) {
    this.#etcd = etcd;
    this.#prefix = (options.prefix ?? etcd.key("statesync")).replace(/\/+$/, "");
    this.#owns = options.ownsConnection ?? false;
  }

  /** The key prefix in use. */
  get prefix(): string {
    return this.#prefix;
  }

  /** The key prefix under which a document's operations are stored (for watchers). */
  opPrefix(documentId: string): string {
    return this.#k("op", documentId) + "/";
  }

  /** Decode an operation row read from under {@link opPrefix}. */
  decodeOpEntry(documentId: string, key: string, value: string): OperationRecord {
    return decodeOp(documentId, Number(key.slice(key.lastIndexOf("/") + 1)), value);
  }

  async createDocument(head: DocumentHead, content: Json): Promise<void> {
    this.#assertOpen();
    const verKey = this.#k("ver", head.id);
    const snapshot = this.#snapshotPuts(head.id, { version: head.version, content });
    const inline = snapshot.bytes <= MAX_TXN_BYTES / 2;
    const result = await etcdTxn(this.#etcd.client, [etcdCompare.createRevision(verKey, 0)], [
      etcdOp.put(this.#k("head", head.id), JSON.stringify(head)),
      etcdOp.put(verKey, String(head.version)),
      ...(inline ? snapshot.puts : []),
    ]);
    if (!result.succeeded) {
      throw new AppError("ALREADY_EXISTS", `Document ${head.id} already exists`);
    }
    if (!inline) await this.#writeInOrder(snapshot.puts);
  }

  async getHead(documentId: string): Promise<DocumentHead | null> {
    this.#assertOpen();
    const value = await this.#etcd.client.get(this.#k("head", documentId)).string();
    return value === null ? null : JSON.parse(value) as DocumentHead;
  }

  async listHeads(options: ListOptions): Promise<DocumentHead[]> {
    this.#assertOpen();
    const prefix = this.#k("head") + "/";
    const start = options.after === undefined ? prefix : this.#k("head", options.after) + "\u0000";
    const response = await this.#etcd.client.kv.range({
      key: Buffer.from(start),
      range_end: prefixEnd(prefix),
      limit: options.limit,
    });
    return response.kvs.map((kv) => JSON.parse(kv.value.toString()) as DocumentHead);
  }

  async commit(requests: readonly CommitRequest[]): Promise<CommitOutcome[]> {
    this.#assertOpen();
    const outcomes: CommitOutcome[] = requests.map(() => "committed");
    const queues = requests.map((request, index) => {
      validateRequest(request);
      return this.#units(request, index);
    });
    // Round r sends the r-th unit of every request still alive, packed into transactions.
    for (let round = 0; queues.some((q) => q.length > round); round++) {
      const units = queues.map((q) => q[round]).filter((u): u is Unit =>
        u !== undefined && outcomes[u.request] === "committed"
      );
      let batch: Unit[] = [];
      let bytes = 0;
      for (const unit of units) {
        if (
          batch.length >= MAX_UNITS_PER_TXN ||
          (batch.length > 0 && bytes + unit.bytes > MAX_TXN_BYTES)
        ) {
          await this.#commitUnits(batch, outcomes);
          batch = [];
          bytes = 0;
        }
        batch.push(unit);
        bytes += unit.bytes;
      }
      if (batch.length > 0) await this.#commitUnits(batch, outcomes);
    }
    return outcomes;
  }

  async #commitUnits(units: Unit[], outcomes: CommitOutcome[]): Promise<void> {
    const nested: EtcdOp[] = units.map((unit) => ({
      request_txn: {
        compare: [etcdCompare.value(this.#k("ver", unit.documentId), String(unit.expectedVersion))],
        success: [
          ...unit.puts,
          etcdOp.put(this.#k("head", unit.documentId), JSON.stringify(unit.head)),
          etcdOp.put(this.#k("ver", unit.documentId), String(unit.head.version)),
        ],
        failure: [],
      },
    }));
    const result = await etcdTxn(this.#etcd.client, [], nested);
    result.responses.forEach((response, i) => {
      if (!response.response_txn?.succeeded) outcomes[units[i]!.request] = "version_conflict";
    });
  }

  /** Cut a request into units that each fit one nested transaction. */
  #units(request: CommitRequest, index: number): Unit[] {
    const items: { puts: EtcdOp[]; ops: number; bytes: number }[] = [];
    const dedupeByOp = new Map<string, DedupeEntry>();
    const loose: DedupeEntry[] = [];
    const opIds = new Set(request.ops.map((op) => op.id));
    for (const dedupe of request.dedupe) {
      if (opIds.has(dedupe.operationId) && dedupe.version > 0) {
        dedupeByOp.set(dedupe.operationId, dedupe);
      } else loose.push(dedupe);
    }
    const item = (puts: EtcdOp[], ops: number) => {
      const bytes = puts.reduce(
        (n, p) => n + (p.request_put?.key?.length ?? 0) + (p.request_put?.value?.length ?? 0) + 16,
        0,
      );
      items.push({ puts, ops, bytes });
    };
    for (const op of request.ops) {
      const puts = [etcdOp.put(this.#opKey(request.documentId, op.version), encodeOp(op))];
      const dedupe = dedupeByOp.get(op.id);
      if (dedupe) puts.push(this.#dedupePut(request.documentId, dedupe));
      item(puts, 1);
    }
    for (const dedupe of loose) item([this.#dedupePut(request.documentId, dedupe)], 0);
    for (const conflict of request.conflicts) {
      item([
        etcdOp.put(
          this.#k("conflict", conflict.documentId, conflict.id),
          JSON.stringify({ state: conflict.state, record: conflict }),
        ),
      ], 0);
    }
    const headBytes = JSON.stringify(request.head).length * 3 + 200;
    const units: Unit[] = [];
    let version = request.expectedVersion;
    const open = (): Unit => ({
      request: index,
      documentId: request.documentId,
      expectedVersion: version,
      head: request.head,
      puts: [],
      bytes: headBytes,
    });
    let current = open();
    for (const next of items) {
      if (
        current.puts.length > 0 &&
        (current.puts.length + next.puts.length > MAX_UNIT_OPS ||
          current.bytes + next.bytes > MAX_TXN_BYTES)
      ) {
        current.head = { ...request.head, version };
        units.push(current);
        current = open();
      }
      current.puts.push(...next.puts);
      current.bytes += next.bytes;
      version += next.ops;
    }
    current.head = request.head;
    units.push(current);
    return units;
  }

  #dedupePut(documentId: string, dedupe: DedupeEntry): EtcdOp {
    // The common case (applied, no conflicts) is just the version: the op row has the rest.
    const plain = !dedupe.held && dedupe.conflictIds.length === 0 && dedupe.version > 0;
    return etcdOp.put(
      this.#k("dedupe", documentId, dedupe.sessionId, dedupe.clientOpId),
      JSON.stringify(plain ? dedupe.version : dedupe),
    );
  }

  #snapshotPuts(documentId: string, snapshot: Snapshot): { puts: EtcdOp[]; bytes: number } {
    const bytes = Buffer.from(JSON.stringify(snapshot.content));
    const chunks = Math.max(1, Math.ceil(bytes.length / CHUNK_BYTES));
    const version = padNumber(snapshot.version);
    const puts: EtcdOp[] = [];
    for (let i = 0; i < chunks; i++) {
      puts.push({
        request_put: {
          key: Buffer.from(this.#k("snapchunk", documentId, version, padNumber(i, 6))),
          value: bytes.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES),
        },
      });
    }
    // The summary goes last: a snapshot is visible only once every chunk is stored.
    puts.push(
      etcdOp.put(
        this.#k("snap", documentId, version),
        JSON.stringify({ chunks, bytes: bytes.length }),
      ),
    );
    return { puts, bytes: bytes.length };
  }

  /** Write puts in order, one transaction per ~1 MB. */
  async #writeInOrder(puts: EtcdOp[]): Promise<void> {
    let batch: EtcdOp[] = [];
    let bytes = 0;
    for (const put of puts) {
      const size = put.request_put?.value?.length ?? 0;
      if (batch.length > 0 && (bytes + size > MAX_TXN_BYTES || batch.length >= MAX_UNIT_OPS)) {
        await etcdTxn(this.#etcd.client, [], batch);
        batch = [];
        bytes = 0;
      }
      batch.push(put);
      bytes += size;
    }
    if (batch.length > 0) await etcdTxn(this.#etcd.client, [], batch);
  }

  async getOps(
    documentId: string,
    fromVersion: number,
    toVersion: number,
    limit = Number.MAX_SAFE_INTEGER,
  ): Promise<OperationRecord[]> {
    this.#assertOpen();
    const ops: OperationRecord[] = [];
    let from = Math.max(0, fromVersion);
    toVersion = Math.min(toVersion, 1e15);
    const wanted = Math.min(limit, toVersion - from);
    while (ops.length < wanted) {
      const response = await this.#etcd.client.kv.range({
        key: Buffer.from(this.#opKey(documentId, from + 1)),
        range_end: Buffer.from(this.#opKey(documentId, toVersion + 1)),
        limit: Math.min(PAGE, wanted - ops.length),
      });
      for (const kv of response.kvs) {
        ops.push(this.decodeOpEntry(documentId, kv.key.toString(), kv.value.toString()));
      }
      if (!response.more || response.kvs.length === 0) break;
      from = ops.at(-1)!.version;
    }
    return ops;
  }

  async putSnapshot(documentId: string, snapshot: Snapshot): Promise<void> {
    this.#assertOpen();
    await this.#writeInOrder(this.#snapshotPuts(documentId, snapshot).puts);
  }

  async getSnapshot(documentId: string, atOrBefore: number): Promise<Snapshot | null> {
    this.#assertOpen();
    if (atOrBefore < 0) return null;
    const prefix = this.#k("snap", documentId) + "/";
    const response = await this.#etcd.client.kv.range({
      key: Buffer.from(prefix),
      range_end: Buffer.from(this.#k("snap", documentId, padNumber(atOrBefore + 1))),
      limit: 1,
      sort_order: "Descend",
      sort_target: "Key",
    });
    const kv = response.kvs[0];
    if (kv === undefined) return null;
    const key = kv.key.toString();
    const version = key.slice(key.lastIndexOf("/") + 1);
    const summary = JSON.parse(kv.value.toString()) as { chunks: number; bytes: number };
    const chunks = await this.#etcd.client.getAll()
      .prefix(this.#k("snapchunk", documentId, version) + "/")
      .sort("Key", "Ascend")
      .exec();
    const bytes = Buffer.concat(chunks.kvs.map((c) => c.value));
    if (bytes.length !== summary.bytes) {
      throw new AppError("DATA_LOSS", `Snapshot ${version} of ${documentId} is incomplete`);
    }
    return { version: Number(version), content: JSON.parse(bytes.toString()) as Json };
  }

  async findDedupe(
    documentId: string,
    sessionId: string,
    clientOpId: string,
  ): Promise<DedupeEntry | null> {
    this.#assertOpen();
    const value = await this.#etcd.client
      .get(this.#k("dedupe", documentId, sessionId, clientOpId)).string();
    if (value === null) return null;
    const stored = JSON.parse(value) as DedupeEntry | number;
    if (typeof stored !== "number") return stored;
    const [op] = await this.getOps(documentId, stored - 1, stored);
    if (op === undefined) {
      throw new AppError("DATA_LOSS", `Operation ${stored} of ${documentId} is missing`);
    }
    return {
      sessionId,
      clientOpId,
      operationId: op.id,
      version: stored,
      held: false,
      conflictIds: [],
    };
  }

  async getConflict(documentId: string, conflictId: string): Promise<ConflictRecord | null> {
    this.#assertOpen();
    const value = await this.#etcd.client.get(this.#k("conflict", documentId, conflictId)).string();
    return value === null ? null : (JSON.parse(value) as { record: ConflictRecord }).record;
  }

  async listConflicts(
    documentId: string,
    options: ListOptions & { includeResolved: boolean },
  ): Promise<ConflictRecord[]> {
    this.#assertOpen();
    const prefix = this.#k("conflict", documentId) + "/";
    let start = options.after === undefined
      ? prefix
      : this.#k("conflict", documentId, options.after) + "\u0000";
    const conflicts: ConflictRecord[] = [];
    while (conflicts.length < options.limit) {
      const response = await this.#etcd.client.kv.range({
        key: Buffer.from(start),
        range_end: prefixEnd(prefix),
        limit: Math.max(options.limit, 16),
      });
      for (const kv of response.kvs) {
        const { state, record } = JSON.parse(kv.value.toString()) as {
          state: string;
          record: ConflictRecord;
        };
        if (options.includeResolved || state === "open") conflicts.push(record);
        if (conflicts.length >= options.limit) break;
      }
      if (!response.more || response.kvs.length === 0) break;
      start = response.kvs.at(-1)!.key.toString() + "\u0000";
    }
    return conflicts;
  }

  async counts(): Promise<StoreCounts> {
    this.#assertOpen();
    const counts: StoreCounts = { documents: 0, operations: 0, conflicts: 0, openConflicts: 0 };
    const versions = await this.#etcd.client.getAll().prefix(this.#k("ver") + "/").strings();
    for (const value of Object.values(versions)) {
      counts.documents++;
      counts.operations += Number(value);
    }
    const conflicts = await this.#etcd.client.getAll().prefix(this.#k("conflict") + "/").strings();
    for (const value of Object.values(conflicts)) {
      counts.conflicts++;
      if ((JSON.parse(value) as { state: string }).state === "open") counts.openConflicts++;
    }
    return counts;
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      if (this.#owns) this.#etcd.close();
    }
    return Promise.resolve();
  }

  /** Same as {@link EtcdDocumentStore.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw new AppError("UNAVAILABLE", "Document store is closed");
  }

  #k(kind: string, ...parts: string[]): string {
    return [this.#prefix, kind, ...parts.map(encodeURIComponent)].join("/");
  }

  #opKey(documentId: string, version: number): string {
    return this.#k("op", documentId, padNumber(version));
  }
}

function encodeOp(op: OperationRecord): string {
  const stored: StoredOp = {
    i: op.id,
    b: op.baseVersion,
    a: op.authorId,
    s: op.sessionId,
    c: op.clientOpId,
    t: op.timestamp,
    o: op.op,
  };
  return JSON.stringify(stored);
}

function decodeOp(documentId: string, version: number, value: string): OperationRecord {
  const s = JSON.parse(value) as StoredOp;
  return {
    id: s.i,
    documentId,
    baseVersion: s.b,
    version,
    authorId: s.a,
    sessionId: s.s,
    clientOpId: s.c,
    timestamp: s.t,
    op: s.o,
  };
}
