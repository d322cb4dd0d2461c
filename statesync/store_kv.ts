/**
 * A {@link DocumentStore} on Deno KV (SQLite on local disk with `Deno.openKv(path)`):
 * the embedded default, so documents survive restarts.
 *
 * Layout under a prefix (default `["statesync"]`), every value the UTF-8 bytes of JSON:
 * - `head/<doc>`: the document's attributes (written only when they change)
 * - `ver/<doc>`: its version and update time; its versionstamp is the optimistic check
 * - `op/<doc>/<version>`: the ops of one commit from that version on (a JSON array, split
 *   to fit a value; a single op object in stores written before ops were packed). One key
 *   per document and commit instead of one per op keeps the SQLite pages a commit touches
 *   few: that, not the bytes, is what a commit costs.
 * - `dedupe/<doc>/<session>/<clientOpId>`: the resend de-duplication entry
 * - `conflict/<doc>/<id>` (+ `conflict_chunk/<doc>/<id>/<i>` when large)
 * - `snap/<doc>/<version>` (+ `snap_chunk/<doc>/<version>/<i>`)
 *
 * Commits of many documents are packed into as few atomic operations as KV's limits
 * allow (1000 mutations, 100 checks, 800 KB of mutations, 80 KB of keys, 64 KiB per
 * value): that group commit is what makes durable throughput high.
 *
 * @example
 * ```ts
 * await using store = await KvDocumentStore.open("data/statesync.kv");
 * const manager = new DocumentManager(store, {});
 * ```
 * @module
 */
import { AppError } from "../kernel/mod.ts";
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

/** KV's hard limits, with margins for key/value framing. */
const MAX_MUTATIONS = 1000;
const MAX_CHECKS = 100;
const MAX_MUTATION_BYTES = 760_000;
const MAX_KEY_BYTES = 76_000;
const CHUNK_BYTES = 60_000;
/** Room counted in every transaction for its head and version keys. */
const HEAD_KEYS_BYTES = 200;
const MAX_VALUE_BYTES = 65_536;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function encode(value: unknown): Uint8Array {
  return encodeText(JSON.stringify(value));
}

/** UTF-8 bytes of `text`; short ASCII text is copied in JS (cheaper than a TextEncoder call). */
function encodeText(text: string): Uint8Array {
  const length = text.length;
  if (length > 512) return encoder.encode(text);
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0x7f) return encoder.encode(text);
    bytes[i] = code;
  }
  return bytes;
}

function decode<T>(value: unknown): T {
  if (!(value instanceof Uint8Array)) {
    throw new AppError("DATA_LOSS", "Unexpected value in the document store");
  }
  return JSON.parse(decoder.decode(value)) as T;
}

/**
 * Commit, retrying while SQLite reports the database locked by another connection
 * (another process or handle on the same file): such a commit was not applied.
 * @throws {AppError} UNAVAILABLE when the database stays locked
 */
async function commitAtomic(
  atomic: Deno.AtomicOperation,
): Promise<Deno.KvCommitResult | Deno.KvCommitError> {
  for (let attempt = 0;; attempt++) {
    try {
      return await atomic.commit();
    } catch (error) {
      if (!(error instanceof Error) || !/database is locked|busy/i.test(error.message)) throw error;
      if (attempt >= 50) {
        throw new AppError("UNAVAILABLE", "Document store is locked by another writer", {
          cause: error,
        });
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(50, 1 + attempt * 2)));
    }
  }
}

/** Approximate encoded size of a key (strings + framing per part). */
function keyBytes(key: Deno.KvKey): number {
  let n = 0;
  for (const part of key) n += (typeof part === "string" ? part.length * 3 : 9) + 2;
  return n;
}

interface Mutation {
  key: Deno.KvKey;
  value: Uint8Array;
}

/** Items that must land in one transaction (an op with its dedupe entry, a conflict). */
interface Item {
  mutations: Mutation[];
  /** Ops in this item (0 or 1). */
  ops: number;
}

/** A slice of one request that fits one transaction, with the head it leaves behind. */
interface Unit {
  request: number;
  documentId: string;
  expectedVersion: number;
  head: DocumentHead;
  /** `metaOf(head)`, computed once. */
  meta?: string;
  mutations: Mutation[];
  bytes: number;
  keyBytes: number;
}

interface CachedStamp {
  version: number;
  /** Versionstamp of the document's `ver` row: the optimistic check of every commit. */
  versionstamp: string;
  /** The stored head attributes (JSON without version and updatedAt). */
  meta: string;
}

/** The per-commit part of a head, kept in its own small row. */
interface VersionRow {
  v: number;
  u: number;
}

/** Head attributes that change rarely, as stored JSON. */
function metaOf(head: DocumentHead): string {
  const { version: _v, updatedAt: _u, ...rest } = head;
  return JSON.stringify(rest);
}

function joinHead(meta: Uint8Array, row: VersionRow): DocumentHead {
  return {
    ...decode<Omit<DocumentHead, "version" | "updatedAt">>(meta),
    version: row.v,
    updatedAt: row.u,
  };
}

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

function storedOp(op: OperationRecord): StoredOp {
  return {
    i: op.id,
    b: op.baseVersion,
    a: op.authorId,
    s: op.sessionId,
    c: op.clientOpId,
    t: op.timestamp,
    o: op.op,
  };
}

/** JSON text of the stored form of an op. */
function opText(op: OperationRecord): string {
  return JSON.stringify(storedOp(op));
}

/** The ops of one `op` row: a packed group from `first` on, or one op (older stores). */
function decodeOps(documentId: string, first: number, value: unknown): OperationRecord[] {
  const stored = decode<StoredOp[] | StoredOp>(value);
  const group = Array.isArray(stored) ? stored : [stored];
  return group.map((s, i) => ({
    id: s.i,
    documentId,
    baseVersion: s.b,
    version: first + i,
    authorId: s.a,
    sessionId: s.s,
    clientOpId: s.c,
    timestamp: s.t,
    op: s.o,
  }));
}

/** Bytes of `text` in UTF-8. */
function utf8Length(text: string): number {
  // deno-lint-ignore no-control-regex
  return /^[\x00-\x7f]*$/.test(text) ? text.length : encoder.encode(text).length;
}

/** Mutations written together in one go, and who waits for them. */
interface PendingWrite {
  mutations: Mutation[];
  done: PromiseWithResolvers<void>;
}

/** Options for {@link KvDocumentStore}. */
export interface KvDocumentStoreOptions {
  /** Key prefix so one KV database can hold several services (default `["statesync"]`). */
  prefix?: Deno.KvKey;
  /** Close the KV handle on {@link KvDocumentStore.close} (default true with `open`). */
  ownsKv?: boolean;
}

/** A {@link DocumentStore} on Deno KV. */
export class KvDocumentStore implements DocumentStore {
  #kv: Deno.Kv;
  #prefix: Deno.KvKey;
  #ownsKv: boolean;
  #stamps = new Map<string, CachedStamp>();
  /** Snapshot writes gathering in this turn. */
  #snapshotWrite: PendingWrite | undefined;
  #closed = false;

  /** Wrap an open KV handle (not closed by this store unless `ownsKv`). */
  constructor(kv: Deno.Kv, options: KvDocumentStoreOptions = {}) {
    this.#kv = kv;
    this.#prefix = options.prefix ?? ["statesync"];
    this.#ownsKv = options.ownsKv ?? false;
  }

  /** Open (or create) a KV database at `path` (`":memory:"` for a throwaway one). */
  static async open(
    path: string,
    options: Omit<KvDocumentStoreOptions, "ownsKv"> = {},
  ): Promise<KvDocumentStore> {
    const kv = await Deno.openKv(path);
    return new KvDocumentStore(kv, { ...options, ownsKv: true });
  }

  #key(...parts: Deno.KvKeyPart[]): Deno.KvKey {
    return [...this.#prefix, ...parts];
  }

  async createDocument(head: DocumentHead, content: Json): Promise<void> {
    this.#assertOpen();
    const headKey = this.#key("head", head.id);
    const verKey = this.#key("ver", head.id);
    const snapshotMutations = this.#snapshotMutations(head.id, {
      version: head.version,
      content,
    });
    const meta = metaOf(head);
    const atomic = this.#kv.atomic().check({ key: verKey, versionstamp: null });
    atomic.set(headKey, encodeText(meta));
    atomic.set(verKey, encode({ v: head.version, u: head.updatedAt } satisfies VersionRow));
    // The initial snapshot goes first when it is small; large ones follow in their own
    // transactions, so a reader can see a head before its first snapshot only briefly.
    const inline = snapshotMutations.length <= 8;
    if (inline) { for (const m of snapshotMutations) atomic.set(m.key, m.value); }
    const result = await commitAtomic(atomic);
    if (!result.ok) throw new AppError("ALREADY_EXISTS", `Document ${head.id} already exists`);
    this.#stamps.set(head.id, { version: head.version, versionstamp: result.versionstamp, meta });
    if (!inline) await this.#writeChunked(snapshotMutations);
  }

  async getHead(documentId: string): Promise<DocumentHead | null> {
    this.#assertOpen();
    return (await this.#readHeads([documentId]))[0] ?? null;
  }

  async listHeads(options: ListOptions): Promise<DocumentHead[]> {
    this.#assertOpen();
    const prefix = this.#key("head");
    const selector: Deno.KvListSelector = options.after === undefined
      ? { prefix }
      : { prefix, start: [...prefix, options.after + "\u0000"] };
    const ids: string[] = [];
    for await (const entry of this.#kv.list(selector, { limit: options.limit })) {
      ids.push(entry.key[entry.key.length - 1] as string);
    }
    const heads = await this.#readHeads(ids);
    return heads.filter((h): h is DocumentHead => h !== null);
  }

  /** Heads of `ids` (null when missing), refreshing the versionstamp cache. */
  async #readHeads(ids: readonly string[]): Promise<(DocumentHead | null)[]> {
    const heads: (DocumentHead | null)[] = [];
    for (let i = 0; i < ids.length; i += 5) {
      const slice = ids.slice(i, i + 5);
      const entries = await this.#kv.getMany<Uint8Array[]>(
        slice.flatMap((id) => [this.#key("head", id), this.#key("ver", id)]),
      );
      slice.forEach((id, j) => {
        const meta = entries[2 * j]!;
        const ver = entries[2 * j + 1]!;
        if (meta.value === null || ver.value === null || ver.versionstamp === null) {
          this.#stamps.delete(id);
          heads.push(null);
          return;
        }
        const head = joinHead(meta.value, decode<VersionRow>(ver.value));
        this.#stamps.set(id, {
          version: head.version,
          versionstamp: ver.versionstamp,
          meta: metaOf(head),
        });
        heads.push(head);
      });
    }
    return heads;
  }

  async commit(requests: readonly CommitRequest[]): Promise<CommitOutcome[]> {
    this.#assertOpen();
    const outcomes: CommitOutcome[] = requests.map(() => "committed");
    const units: Unit[] = [];
    requests.forEach((request, index) => {
      validateRequest(request);
      units.push(...this.#units(request, index));
    });
    const failed = new Set<number>();
    let batch: Unit[] = [];
    let mutations = 0;
    let bytes = 0;
    let keys = 0;
    const flush = async () => {
      if (batch.length > 0) await this.#commitUnits(batch, failed);
      batch = [];
      mutations = bytes = keys = 0;
    };
    for (const unit of units) {
      const fits = batch.length < MAX_CHECKS &&
        mutations + unit.mutations.length + 1 <= MAX_MUTATIONS &&
        bytes + unit.bytes <= MAX_MUTATION_BYTES && keys + unit.keyBytes <= MAX_KEY_BYTES &&
        !batch.some((u) => u.documentId === unit.documentId);
      if (!fits) await flush();
      batch.push(unit);
      mutations += unit.mutations.length + 1;
      bytes += unit.bytes;
      keys += unit.keyBytes;
    }
    await flush();
    for (const index of failed) outcomes[index] = "version_conflict";
    return outcomes;
  }

  /** Cut a request into units that each fit one transaction (usually exactly one unit). */
  #units(request: CommitRequest, index: number): Unit[] {
    const single = this.#singleUnit(request, index);
    if (single !== undefined) return [single];
    const items: Item[] = [];
    const dedupeByOp = new Map<string, DedupeEntry>();
    const loose: DedupeEntry[] = [];
    const opIds = new Set(request.ops.map((op) => op.id));
    for (const dedupe of request.dedupe) {
      if (opIds.has(dedupe.operationId) && dedupe.version > 0) {
        dedupeByOp.set(dedupe.operationId, dedupe);
      } else loose.push(dedupe);
    }
    items.push(...this.#opItems(request, dedupeByOp));
    for (const dedupe of loose) {
      items.push({ mutations: [this.#dedupeMutation(request.documentId, dedupe)], ops: 0 });
    }
    for (const conflict of request.conflicts) {
      items.push({ mutations: this.#conflictMutations(conflict), ops: 0 });
    }
    const headBytes = encode(request.head).length + HEAD_KEYS_BYTES;
    const units: Unit[] = [];
    let current: Unit | undefined;
    let version = request.expectedVersion;
    const open = (): Unit => ({
      request: index,
      documentId: request.documentId,
      expectedVersion: version,
      head: request.head,
      mutations: [],
      bytes: headBytes,
      keyBytes: HEAD_KEYS_BYTES,
    });
    const close = () => {
      if (current === undefined) return;
      current.head = { ...request.head, version };
      units.push(current);
      current = undefined;
    };
    for (const item of items) {
      const itemBytes = item.mutations.reduce((n, m) => n + m.value.length + keyBytes(m.key), 0);
      const itemKeys = item.mutations.reduce((n, m) => n + keyBytes(m.key), 0);
      if (
        current !== undefined &&
        (current.mutations.length + item.mutations.length + 1 > MAX_MUTATIONS ||
          current.bytes + itemBytes > MAX_MUTATION_BYTES ||
          current.keyBytes + itemKeys > MAX_KEY_BYTES)
      ) {
        close();
      }
      current ??= open();
      current.mutations.push(...item.mutations);
      current.bytes += itemBytes;
      current.keyBytes += itemKeys;
      version += item.ops;
    }
    current ??= open(); // a request with no items is still one unit: its head
    close();
    const last = units[units.length - 1]!;
    last.head = request.head;
    return units;
  }

  /**
   * The common request (only ops, packed into one value) as one unit, without measuring
   * every op; undefined when the request needs {@link KvDocumentStore.#units}' general path.
   */
  #singleUnit(request: CommitRequest, index: number): Unit | undefined {
    const first = request.ops[0];
    if (first === undefined || request.dedupe.length > 0 || request.conflicts.length > 0) {
      return undefined;
    }
    const value = encode(request.ops.map(storedOp));
    if (value.length > CHUNK_BYTES) return undefined;
    const key = this.#key("op", request.documentId, first.version);
    const meta = metaOf(request.head);
    return {
      request: index,
      documentId: request.documentId,
      expectedVersion: request.expectedVersion,
      head: request.head,
      meta,
      mutations: [{ key, value }],
      bytes: value.length + keyBytes(key) + meta.length + HEAD_KEYS_BYTES,
      keyBytes: keyBytes(key) + HEAD_KEYS_BYTES,
    };
  }

  /** The request's ops packed into values of at most CHUNK_BYTES, each with its ops' dedupe entries. */
  #opItems(request: CommitRequest, dedupeByOp: Map<string, DedupeEntry>): Item[] {
    const items: Item[] = [];
    let texts: string[] = [];
    let bytes = 2;
    let first = 0;
    let extra: Mutation[] = [];
    const close = () => {
      if (texts.length === 0) return;
      items.push({
        mutations: [
          {
            key: this.#key("op", request.documentId, first),
            value: encodeText(`[${texts.join(",")}]`),
          },
          ...extra,
        ],
        ops: texts.length,
      });
      texts = [];
      bytes = 2;
      extra = [];
    };
    for (const op of request.ops) {
      const text = opText(op);
      const size = utf8Length(text) + 1;
      if (texts.length > 0 && bytes + size > CHUNK_BYTES) close();
      if (texts.length === 0) first = op.version;
      texts.push(text);
      bytes += size;
      const dedupe = dedupeByOp.get(op.id);
      if (dedupe) extra.push(this.#dedupeMutation(request.documentId, dedupe));
    }
    close();
    return items;
  }

  /** Commit units (different documents) in one transaction; on a failed check, find who lost. */
  async #commitUnits(units: Unit[], failed: Set<number>): Promise<void> {
    const live = units.filter((u) => !failed.has(u.request));
    const missing = live.filter((u) =>
      this.#stamps.get(u.documentId)?.version !== u.expectedVersion
    );
    if (missing.length > 0) await this.#readHeads(missing.map((u) => u.documentId));
    const ready: Unit[] = [];
    for (const unit of live) {
      if (this.#stamps.get(unit.documentId)?.version === unit.expectedVersion) ready.push(unit);
      else failed.add(unit.request);
    }
    if (ready.length === 0) return;
    if (await this.#tryCommit(ready)) return;
    // Some check failed: commit one by one to learn which documents lost the race.
    for (const unit of ready) {
      if (!(await this.#tryCommit([unit]))) {
        this.#stamps.delete(unit.documentId);
        failed.add(unit.request);
      }
    }
  }

  async #tryCommit(units: Unit[]): Promise<boolean> {
    const atomic = this.#kv.atomic();
    for (const unit of units) {
      const verKey = this.#key("ver", unit.documentId);
      const stamp = this.#stamps.get(unit.documentId)!;
      atomic.check({ key: verKey, versionstamp: stamp.versionstamp });
      for (const m of unit.mutations) atomic.set(m.key, m.value);
      const meta = unit.meta ??= metaOf(unit.head);
      if (meta !== stamp.meta) atomic.set(this.#key("head", unit.documentId), encodeText(meta));
      atomic.set(
        verKey,
        encode({ v: unit.head.version, u: unit.head.updatedAt } satisfies VersionRow),
      );
    }
    const result = await commitAtomic(atomic);
    if (!result.ok) return false;
    for (const unit of units) {
      this.#stamps.set(unit.documentId, {
        version: unit.head.version,
        versionstamp: result.versionstamp,
        meta: unit.meta!,
      });
    }
    return true;
  }

  #dedupeMutation(documentId: string, dedupe: DedupeEntry): Mutation {
    // The common case (applied, no conflicts) is just the version: the op row has the rest.
    const plain = !dedupe.held && dedupe.conflictIds.length === 0 && dedupe.version > 0;
    return {
      key: this.#key("dedupe", documentId, dedupe.sessionId, dedupe.clientOpId),
      value: encode(plain ? dedupe.version : dedupe),
    };
  }

  #conflictMutations(conflict: ConflictRecord): Mutation[] {
    const bytes = encode(conflict);
    const summary = { state: conflict.state };
    if (bytes.length <= CHUNK_BYTES) {
      return [{
        key: this.#key("conflict", conflict.documentId, conflict.id),
        value: encode({ ...summary, record: JSON.parse(decoder.decode(bytes)) }),
      }];
    }
    const mutations: Mutation[] = [];
    const chunks = Math.ceil(bytes.length / CHUNK_BYTES);
    for (let i = 0; i < chunks; i++) {
      mutations.push({
        key: this.#key("conflict_chunk", conflict.documentId, conflict.id, i),
        value: bytes.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES),
      });
    }
    mutations.push({
      key: this.#key("conflict", conflict.documentId, conflict.id),
      value: encode({ ...summary, chunks }),
    });
    return mutations;
  }

  #snapshotMutations(documentId: string, snapshot: Snapshot): Mutation[] {
    const bytes = encode(snapshot.content);
    const chunks = Math.max(1, Math.ceil(bytes.length / CHUNK_BYTES));
    const mutations: Mutation[] = [];
    for (let i = 0; i < chunks; i++) {
      mutations.push({
        key: this.#key("snap_chunk", documentId, snapshot.version, i),
        value: bytes.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES),
      });
    }
    // The summary goes last: a snapshot is visible only once every chunk is stored.
    mutations.push({
      key: this.#key("snap", documentId, snapshot.version),
      value: encode({ chunks, bytes: bytes.length }),
    });
    return mutations;
  }

  /** Write mutations in order, as many per transaction as fit. */
  async #writeChunked(mutations: Mutation[]): Promise<void> {
    let atomic = this.#kv.atomic();
    let count = 0;
    let bytes = 0;
    for (const m of mutations) {
      const size = m.value.length + keyBytes(m.key);
      if (count > 0 && (count + 1 > MAX_MUTATIONS || bytes + size > MAX_MUTATION_BYTES)) {
        await commitAtomic(atomic);
        atomic = this.#kv.atomic();
        count = bytes = 0;
      }
      atomic.set(m.key, m.value);
      count++;
      bytes += size;
    }
    if (count > 0) await commitAtomic(atomic);
  }

  async getOps(
    documentId: string,
    fromVersion: number,
    toVersion: number,
    limit = Number.MAX_SAFE_INTEGER,
  ): Promise<OperationRecord[]> {
    this.#assertOpen();
    const want = Math.min(limit, toVersion - fromVersion);
    if (want <= 0) return [];
    const ops: OperationRecord[] = [];
    const take = (entry: Deno.KvEntry<unknown>) => {
      const first = entry.key[entry.key.length - 1] as number;
      for (const op of decodeOps(documentId, first, entry.value)) {
        if (op.version > fromVersion && op.version <= toVersion && ops.length < want) ops.push(op);
      }
    };
    // The group holding version fromVersion + 1 may start before it.
    const before = this.#kv.list({
      start: this.#key("op", documentId, 0),
      end: this.#key("op", documentId, fromVersion + 2),
    }, { reverse: true, limit: 1 });
    for await (const entry of before) take(entry);
    const after = this.#kv.list({
      start: this.#key("op", documentId, fromVersion + 2),
      end: this.#key("op", documentId, toVersion + 1),
    }, { batchSize: Math.min(500, want) });
    for await (const entry of after) {
      if (ops.length >= want) break;
      take(entry);
    }
    return ops;
  }

  /**
   * Snapshots requested in one event-loop turn (the engine saves those of a whole group
   * commit at once) are written together: one transaction for 100 documents, not 100.
   */
  async putSnapshot(documentId: string, snapshot: Snapshot): Promise<void> {
    this.#assertOpen();
    const mutations = this.#snapshotMutations(documentId, snapshot);
    for (const m of mutations) {
      if (m.value.length > MAX_VALUE_BYTES) throw new RangeError("Snapshot chunk too large");
    }
    await this.#queueSnapshot(mutations);
  }

  /** Add to the snapshot write gathering in this turn (started on first use). */
  #queueSnapshot(mutations: Mutation[]): Promise<void> {
    if (this.#snapshotWrite === undefined) {
      const write: PendingWrite = { mutations: [], done: Promise.withResolvers<void>() };
      this.#snapshotWrite = write;
      queueMicrotask(() => {
        this.#snapshotWrite = undefined;
        this.#writeChunked(write.mutations).then(write.done.resolve, write.done.reject);
      });
    }
    this.#snapshotWrite.mutations.push(...mutations);
    return this.#snapshotWrite.done.promise;
  }

  async getSnapshot(documentId: string, atOrBefore: number): Promise<Snapshot | null> {
    this.#assertOpen();
    const iterator = this.#kv.list<Uint8Array>({
      start: this.#key("snap", documentId, 0),
      end: this.#key("snap", documentId, atOrBefore + 1),
    }, { reverse: true, limit: 1 });
    for await (const entry of iterator) {
      const version = entry.key[entry.key.length - 1] as number;
      const summary = decode<{ chunks: number; bytes: number }>(entry.value);
      const bytes = new Uint8Array(summary.bytes);
      let offset = 0;
      const chunks = this.#kv.list<Uint8Array>({
        prefix: this.#key("snap_chunk", documentId, version),
      }, { limit: summary.chunks });
      for await (const chunk of chunks) {
        bytes.set(chunk.value, offset);
        offset += chunk.value.length;
      }
      if (offset !== summary.bytes) {
        throw new AppError("DATA_LOSS", `Snapshot ${version} of ${documentId} is incomplete`);
      }
      return { version, content: JSON.parse(decoder.decode(bytes)) as Json };
    }
    return null;
  }

  async findDedupe(
    documentId: string,
    sessionId: string,
    clientOpId: string,
  ): Promise<DedupeEntry | null> {
    this.#assertOpen();
    const entry = await this.#kv.get(this.#key("dedupe", documentId, sessionId, clientOpId));
    if (entry.value === null) return null;
    const stored = decode<DedupeEntry | number>(entry.value);
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
    const entry = await this.#kv.get(this.#key("conflict", documentId, conflictId));
    if (entry.value === null) return null;
    return await this.#readConflict(documentId, conflictId, entry.value);
  }

  async #readConflict(
    documentId: string,
    conflictId: string,
    value: unknown,
  ): Promise<ConflictRecord> {
    const summary = decode<{ state: string; record?: ConflictRecord; chunks?: number }>(value);
    if (summary.record !== undefined) return summary.record;
    const parts: Uint8Array[] = [];
    const chunks = this.#kv.list<Uint8Array>({
      prefix: this.#key("conflict_chunk", documentId, conflictId),
    });
    for await (const chunk of chunks) parts.push(chunk.value);
    const total = parts.reduce((n, p) => n + p.length, 0);
    const bytes = new Uint8Array(total);
    let offset = 0;
    for (const part of parts) {
      bytes.set(part, offset);
      offset += part.length;
    }
    return JSON.parse(decoder.decode(bytes)) as ConflictRecord;
  }

  async listConflicts(
    documentId: string,
    options: ListOptions & { includeResolved: boolean },
  ): Promise<ConflictRecord[]> {
    this.#assertOpen();
    const prefix = this.#key("conflict", documentId);
    const selector: Deno.KvListSelector = options.after === undefined
      ? { prefix }
      : { prefix, start: [...prefix, options.after + "\u0000"] };
    const conflicts: ConflictRecord[] = [];
    for await (const entry of this.#kv.list(selector)) {
      if (conflicts.length >= options.limit) break;
      const summary = decode<{ state: string }>(entry.value);
      if (!options.includeResolved && summary.state !== "open") continue;
      const id = entry.key[entry.key.length - 1] as string;
      conflicts.push(await this.#readConflict(documentId, id, entry.value));
    }
    return conflicts;
  }

  async counts(): Promise<StoreCounts> {
    this.#assertOpen();
    const counts: StoreCounts = { documents: 0, operations: 0, conflicts: 0, openConflicts: 0 };
    for await (const entry of this.#kv.list({ prefix: this.#key("ver") })) {
      counts.documents++;
      counts.operations += decode<VersionRow>(entry.value).v;
    }
    for await (const entry of this.#kv.list({ prefix: this.#key("conflict") })) {
      counts.conflicts++;
      if (decode<{ state: string }>(entry.value).state === "open") counts.openConflicts++;
    }
    return counts;
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      if (this.#ownsKv) this.#kv.close();
    }
    return Promise.resolve();
  }

  /** Same as {@link KvDocumentStore.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw new AppError("UNAVAILABLE", "Document store is closed");
  }
}
