/**
 * The StateSync gRPC service (`proto/statesync.proto`): unary calls delegate to the
 * document engine, the lock table and presence, with every field validated
 * (INVALID_ARGUMENT naming it); SubscribeDocument streams events with ShareDB-style resume
 * and backpressure, SubscribeDocuments carries many such subscriptions over one stream with
 * their events batched per turn (subscription_mux.ts); SubmitOperations and
 * SubmitOperationBatches are the gateway's bidirectional hot path.
 *
 * @example
 * ```ts
 * const service = new StateSyncService({ documents, hub, locks, presence });
 * const server = await startStateSyncServer(service, { hostname: "127.0.0.1", port: 0 });
 * console.log(server.port);
 * await server.close();
 * ```
 * @module
 */
import {
  type sendUnaryData,
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServerWritableStream,
} from "@grpc/grpc-js";
import { SpanKind, trace } from "@opentelemetry/api";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { Buffer } from "node:buffer";
import {
  addHealthService,
  AppError,
  CallGate,
  contextFromTraceparent,
  currentTraceId,
  drainCalls,
  gateHandlers,
  GrpcServerMetrics,
  grpcServerTracing,
  type GuardedListener,
  HealthState,
  listenGuarded,
  type Logger,
  parseId,
  recordSpanError,
  Registry,
  silentLogger,
  withSpan,
} from "../kernel/mod.ts";
import { OpError } from "./json0/mod.ts";
import { serveSubscriptionMux, type SubscriptionOutput } from "./subscription_mux.ts";
import type { Json, Path } from "./json0/types.ts";
import type {
  ApplyInput,
  ApplyResult,
  ConflictRecord,
  ConflictResolution,
  CreateDocumentInput,
  DocumentFilter,
  DocumentPatch,
  DocumentRecord,
  OperationRecord,
} from "./model.ts";
import type { EventHub } from "./hub.ts";
import type { LockService } from "./lock_etcd.ts";
import type { PresenceManager } from "./presence.ts";
import {
  conflictToProto,
  documentStateFromProto,
  documentToProto,
  documentTypeFromProto,
  jsonFromText,
  lockToProto,
  operationToProto,
  opFromProto,
  pathFromProto,
  presenceToProto,
  sharedEventProto,
  strategyFromProto,
} from "./convert.ts";
import * as pb from "../proto/gen/statesync.ts";

/** The parts of the document engine (`DocumentManager`) the service calls. */
export interface Documents {
  create(actorId: string, input: CreateDocumentInput): Promise<DocumentRecord>;
  get(actorId: string, documentId: string, atVersion?: number): Promise<DocumentRecord>;
  update(actorId: string, documentId: string, patch: DocumentPatch): Promise<DocumentRecord>;
  delete(actorId: string, documentId: string): Promise<void>;
  list(
    actorId: string,
    filter: DocumentFilter,
    page: { pageSize?: number; pageToken?: string },
  ): Promise<{ documents: DocumentRecord[]; nextPageToken: string }>;
  apply(actorId: string, input: ApplyInput): Promise<ApplyResult>;
  history(
    actorId: string,
    documentId: string,
    range: { fromVersion: number; toVersion?: number; pageSize?: number; pageToken?: string },
  ): Promise<{ operations: OperationRecord[]; nextPageToken: string; historyGone?: boolean }>;
  listConflicts(
    actorId: string,
    documentId: string,
    options: { includeResolved?: boolean; pageSize?: number; pageToken?: string },
  ): Promise<{ conflicts: ConflictRecord[]; nextPageToken: string }>;
  resolveConflict(
    actorId: string,
    documentId: string,
    conflictId: string,
    resolution: ConflictResolution,
  ): Promise<{ conflict: ConflictRecord; operation?: OperationRecord }>;
  assertCanRead(actorId: string, documentId: string): Promise<DocumentRecord>;
  stats(): Promise<
    {
      documents: number;
      operations: number;
      conflicts: number;
      openConflicts: number;
      transforms: number;
    }
  >;
  close(): Promise<void>;
}

/** What {@link StateSyncService} is wired with. */
export interface StateSyncServiceOptions {
  documents: Documents;
  hub: EventHub;
  locks: LockService;
  presence: PresenceManager;
  logger?: Logger;
  /** Most SubmitOperations requests in flight per stream before reading pauses (default 4096). */
  maxInFlightPerStream?: number;
  /** Catch-up page size for SubscribeDocument (default 1000). */
  historyPageSize?: number;
  /** Told about every operation submission (metrics); default: nobody. */
  applyObserver?: ApplyObserver;
}

/** Receives the result of every operation submission and its duration. */
export interface ApplyObserver {
  /** `result` is undefined when the submission failed. */
  observeApply(result: ApplyResult | undefined, seconds: number): void;
}

const tracer = trace.getTracer("aetherflow-statesync");

/** The gRPC service name, as health checks name it. */
export const STATESYNC_SERVICE_NAME = "aetherflow.statesync.v1.StateSyncService";

/** The span of one submitted op (built once: it is the same for every op). */
const SUBMIT_SPAN_NAME = `${STATESYNC_SERVICE_NAME}/SubmitOperations`;
const SUBMIT_SPAN_OPTIONS = {
  kind: SpanKind.SERVER,
  attributes: {
    "rpc.system": "grpc",
    "rpc.service": STATESYNC_SERVICE_NAME,
    "rpc.method": "SubmitOperations",
  },
} as const;

/** The field names an ApplyOperationRequest's errors name, built once (not per op). */
interface ApplyFields {
  request: string;
  operation: string;
  actorId: string;
  documentId: string;
  components: string;
}

function applyFields(prefix: string): ApplyFields {
  return {
    request: prefix === "" ? "request" : prefix.slice(0, -1),
    operation: `${prefix}operation`,
    actorId: `${prefix}actor_id`,
    documentId: `${prefix}operation.document_id`,
    components: `${prefix}operation.components`,
  };
}

const UNARY_APPLY_FIELDS = applyFields("");
/** A submit request carries its ApplyOperationRequest in `apply`. */
const SUBMIT_APPLY_FIELDS = applyFields("apply.");

const MAX_PAGE_SIZE = 1000;
const DEFAULT_PAGE_SIZE = 100;

/** The StateSync gRPC handlers and the state of their open streams. */
export class StateSyncService {
  #documents: Documents;
  #hub: EventHub;
  #locks: LockService;
  #presence: PresenceManager;
  #log: Logger;
  #maxInFlight: number;
  #historyPageSize: number;
  #observer: ApplyObserver | undefined;
  #streams = new Set<{ stop(): Promise<void> }>();
  /** Running SubscribeDocument handlers, awaited on close so each stream's status is sent. */
  #subscriptions = new Set<Promise<void>>();
  #closing = false;

  constructor(options: StateSyncServiceOptions) {
    this.#documents = options.documents;
    this.#hub = options.hub;
    this.#locks = options.locks;
    this.#presence = options.presence;
    this.#log = options.logger ?? silentLogger;
    this.#maxInFlight = options.maxInFlightPerStream ?? 4096;
    this.#historyPageSize = options.historyPageSize ?? 1000;
    this.#observer = options.applyObserver;
  }

  /** The handler table for `server.addService(StateSyncServiceService, ...)`. */
  handlers(): pb.StateSyncServiceServer {
    return {
      createDocument: this.#unary((r) => this.#createDocument(r)),
      getDocument: this.#unary((r) => this.#getDocument(r)),
      updateDocument: this.#unary((r) => this.#updateDocument(r)),
      deleteDocument: this.#unary(async (r: pb.DeleteDocumentRequest) => {
        await this.#documents.delete(actor(r.actorId), documentId(r.documentId));
        return {};
      }),
      listDocuments: this.#unary((r) => this.#listDocuments(r)),
      applyOperation: this.#unary((r) => this.#apply(r, UNARY_APPLY_FIELDS)),
      submitOperations: (call) => this.#submitOperations(call),
      submitOperationBatches: (call) => this.#submitBatches(call),
      getOperationHistory: this.#unary((r) => this.#history(r)),
      subscribeDocuments: (call) => this.#subscribeMany(call),
      subscribeDocument: (call) => {
        const task = this.#subscribe(call);
        this.#subscriptions.add(task);
        void task.finally(() => this.#subscriptions.delete(task));
      },
      unsubscribeDocument: this.#unary((r: pb.UnsubscribeDocumentRequest) => {
        const subscriber = required(r.subscriberId, "subscriber_id");
        this.#hub.unsubscribe(documentId(r.documentId), subscriber, actor(r.actorId));
        return {};
      }),
      acquireLock: (call, callback) => {
        // A caller that goes away while waiting for a held lock must not be granted it.
        const abort = new AbortController();
        call.on("cancelled", () => abort.abort());
        this.#unary((r: pb.AcquireLockRequest) => this.#acquireLock(r, abort.signal))(
          call,
          callback,
        );
      },
      releaseLock: this.#unary(async (r: pb.ReleaseLockRequest) => {
        const id = documentId(r.documentId);
        const lockId = parseId(r.lockId, "lock_id");
        const who = actor(r.actorId);
        await this.#documents.assertCanRead(who, id);
        await this.#locks.release(who, id, lockId);
        return {};
      }),
      isLocked: this.#unary(async (r: pb.IsLockedRequest) => {
        const id = documentId(r.documentId);
        await this.#documents.assertCanRead(actor(r.actorId), id);
        const lock = this.#locks.isLocked(id, pathFromProto(r.path, "path"));
        return { locked: lock !== undefined, lock: lock && lockToProto(lock) };
      }),
      listConflicts: this.#unary(async (r: pb.ListConflictsRequest) => {
        const result = await this.#documents.listConflicts(
          actor(r.actorId),
          documentId(r.documentId),
          {
            includeResolved: r.includeResolved,
            pageSize: pageSize(r.pageSize),
            pageToken: r.pageToken,
          },
        );
        return {
          conflicts: result.conflicts.map(conflictToProto),
          nextPageToken: result.nextPageToken,
        };
      }),
      resolveConflict: this.#unary((r) => this.#resolveConflict(r)),
      updatePresence: this.#unary((r) => this.#updatePresence(r)),
      getPresence: this.#unary(async (r: pb.GetPresenceRequest) => {
        const id = documentId(r.documentId);
        await this.#documents.assertCanRead(actor(r.actorId), id);
        return { presence: this.#presence.list(id).map(presenceToProto) };
      }),
      getStats: this.#unary(() => this.stats()),
    };
  }

  /** Counters for GetStats. */
  async stats(): Promise<pb.Stats> {
    const engine = await this.#documents.stats();
    return {
      documents: engine.documents,
      operations: engine.operations,
      conflicts: engine.conflicts,
      openConflicts: engine.openConflicts,
      transforms: engine.transforms,
      subscribers: this.#hub.subscriberCount(),
      activeUsers: this.#presence.activeUserCount(),
      locks: this.#locks.count(),
    };
  }

  /**
   * Stop the streams: subscriptions end with UNAVAILABLE, SubmitOperations streams stop
   * reading, finish the requests in flight and complete.
   */
  async closeStreams(): Promise<void> {
    this.#closing = true;
    this.#hub.close();
    await Promise.all([
      ...[...this.#streams].map((stream) => stream.stop()),
      ...this.#subscriptions,
    ]);
  }

  // ---- unary plumbing ------------------------------------------------------------------

  #unary<Req, Res>(
    fn: (request: Req) => Promise<Res> | Res,
  ): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
    return (call, callback) => {
      let result: Promise<Res>;
      try {
        result = Promise.resolve(fn(call.request));
      } catch (error) {
        result = Promise.reject(error);
      }
      result.then(
        (response) => callback(null, response),
        (error) =>
          callback(this.#toAppError(error, call.metadata.get("x-request-id")[0]).toServiceError()),
      );
    };
  }

  #toAppError(error: unknown, requestId?: unknown): AppError {
    const appError = toAppError(error);
    if (appError.status === "INTERNAL") {
      this.#log.error("StateSync call failed", {
        error: appError.cause ?? error,
        request_id: typeof requestId === "string" ? requestId : undefined,
        trace_id: currentTraceId(),
      });
    }
    return appError;
  }

  // ---- documents -----------------------------------------------------------------------

  async #createDocument(r: pb.CreateDocumentRequest): Promise<pb.Document> {
    const input: CreateDocumentInput = {
      name: r.name,
      type: documentTypeFromProto(r.type, "type"),
    };
    if (r.contentJson !== "") input.content = jsonFromText(r.contentJson, "content_json");
    if (r.permissions !== undefined) input.permissions = { ...r.permissions };
    if (Object.keys(r.metadata).length > 0) input.metadata = { ...r.metadata };
    if (r.conflictStrategy !== pb.ConflictStrategy.CONFLICT_STRATEGY_UNSPECIFIED) {
      input.conflictStrategy = strategyFromProto(r.conflictStrategy, "conflict_strategy");
    }
    const record = await this.#documents.create(actor(r.actorId), input);
    return documentToProto(record, { activeUsers: this.#presence.activeUsers(record.id) });
  }

  async #getDocument(r: pb.GetDocumentRequest): Promise<pb.Document> {
    const id = documentId(r.documentId);
    const record = await this.#documents.get(
      actor(r.actorId),
      id,
      r.atVersion === 0 ? undefined : r.atVersion,
    );
    return documentToProto(record, { activeUsers: this.#presence.activeUsers(id) });
  }

  async #updateDocument(r: pb.UpdateDocumentRequest): Promise<pb.Document> {
    if (r.updateMask.length === 0) {
      throw new TypeError("Invalid update_mask: name at least one field to change");
    }
    const patch: DocumentPatch = {};
    r.updateMask.forEach((field, i) => {
      switch (field) {
        case "name":
          patch.name = r.name;
          break;
        case "state":
          patch.state = documentStateFromProto(r.state, "state");
          break;
        case "permissions":
          patch.permissions = {
            editors: [...(r.permissions?.editors ?? [])],
            viewers: [...(r.permissions?.viewers ?? [])],
            publicRead: r.permissions?.publicRead ?? false,
          };
          break;
        case "metadata":
          patch.metadata = { ...r.metadata };
          break;
        case "conflict_strategy":
          patch.conflictStrategy = strategyFromProto(r.conflictStrategy, "conflict_strategy");
          break;
        default:
          throw new TypeError(
            `Invalid update_mask[${i}]: unknown field "${field}" (name, state, permissions, ` +
              `metadata, conflict_strategy)`,
          );
      }
    });
    const id = documentId(r.documentId);
    const record = await this.#documents.update(actor(r.actorId), id, patch);
    return documentToProto(record, { activeUsers: this.#presence.activeUsers(id) });
  }

  async #listDocuments(r: pb.ListDocumentsRequest): Promise<pb.ListDocumentsResponse> {
    const filter: DocumentFilter = {};
    if (r.ownerId !== "") filter.ownerId = r.ownerId;
    if (r.type !== pb.DocumentType.DOCUMENT_TYPE_UNSPECIFIED) {
      filter.type = documentTypeFromProto(r.type, "type");
    }
    if (r.state !== pb.DocumentState.DOCUMENT_STATE_UNSPECIFIED) {
      filter.state = documentStateFromProto(r.state, "state");
    }
    const result = await this.#documents.list(actor(r.actorId), filter, {
      pageSize: pageSize(r.pageSize),
      pageToken: r.pageToken,
    });
    return {
      documents: result.documents.map((d) => documentToProto(d, { withContent: false })),
      nextPageToken: result.nextPageToken,
    };
  }

  // ---- operations ------------------------------------------------------------------------

  async #apply(
    r: pb.ApplyOperationRequest | undefined,
    fields: ApplyFields,
  ): Promise<pb.ApplyOperationResponse> {
    if (r === undefined) throw new TypeError(`Invalid ${fields.request}: required`);
    const operation = r.operation;
    if (operation === undefined) throw new TypeError(`Invalid ${fields.operation}: required`);
    const who = actor(r.actorId, fields.actorId);
    const input = {
      documentId: parseId(operation.documentId, fields.documentId),
      baseVersion: operation.baseVersion,
      sessionId: operation.sessionId,
      clientOpId: operation.clientOpId,
      op: opFromProto(operation.components, fields.components),
    };
    const started = performance.now();
    let result: ApplyResult;
    try {
      result = await this.#documents.apply(who, input);
    } catch (error) {
      this.#observer?.observeApply(undefined, (performance.now() - started) / 1000);
      throw error;
    }
    this.#observer?.observeApply(result, (performance.now() - started) / 1000);
    return {
      operation: operationToProto(result.operation),
      version: result.version,
      duplicate: result.duplicate,
      held: result.held,
      conflicts: result.conflicts.map(conflictToProto),
    };
  }

  async #history(r: pb.GetOperationHistoryRequest): Promise<pb.GetOperationHistoryResponse> {
    const id = documentId(r.documentId);
    if (r.toVersion !== 0 && r.toVersion < r.fromVersion) {
      throw new RangeError("Invalid to_version: must be 0 or >= from_version");
    }
    const result = await this.#documents.history(actor(r.actorId), id, {
      fromVersion: r.fromVersion,
      ...(r.toVersion === 0 ? {} : { toVersion: r.toVersion }),
      pageSize: pageSize(r.pageSize),
      pageToken: r.pageToken,
    });
    if (result.historyGone) {
      throw new AppError(
        "FAILED_PRECONDITION",
        `History after version ${r.fromVersion} is no longer available: read the document instead`,
      );
    }
    return {
      operations: result.operations.map(operationToProto),
      nextPageToken: result.nextPageToken,
    };
  }

  async #resolveConflict(r: pb.ResolveConflictRequest): Promise<pb.ResolveConflictResponse> {
    const id = documentId(r.documentId);
    const conflictId = parseId(r.conflictId, "conflict_id");
    let resolution: ConflictResolution;
    const chosen = r.resolution;
    if (chosen?.$case === "side") {
      if (chosen.value === pb.ConflictSide.CONFLICT_SIDE_APPLIED) resolution = { side: "applied" };
      else if (chosen.value === pb.ConflictSide.CONFLICT_SIDE_INCOMING) {
        resolution = { side: "incoming" };
      } else {throw new TypeError(
          "Invalid side: expected CONFLICT_SIDE_APPLIED or CONFLICT_SIDE_INCOMING",
        );}
    } else if (chosen?.$case === "valueJson") {
      resolution = { value: jsonFromText(chosen.value, "value_json") };
    } else {
      throw new TypeError("Invalid resolution: give side or value_json");
    }
    const result = await this.#documents.resolveConflict(
      actor(r.actorId),
      id,
      conflictId,
      resolution,
    );
    return {
      conflict: conflictToProto(result.conflict),
      operation: result.operation && operationToProto(result.operation),
    };
  }

  // ---- locks and presence -------------------------------------------------------------------

  async #acquireLock(r: pb.AcquireLockRequest, signal: AbortSignal): Promise<pb.Lock> {
    const id = documentId(r.documentId);
    const who = actor(r.actorId);
    const path: Path = pathFromProto(r.path, "path");
    const lockId = r.lockId === "" ? undefined : parseId(r.lockId, "lock_id");
    const doc = await this.#documents.assertCanRead(who, id);
    if (doc.ownerId !== who && !doc.permissions.editors.includes(who)) {
      throw new AppError("PERMISSION_DENIED", `User ${who} may not edit document ${id}`);
    }
    if (doc.state !== "active") {
      throw new AppError("FAILED_PRECONDITION", `Document ${id} is ${doc.state}`);
    }
    const lock = await this.#locks.acquire(who, {
      documentId: id,
      path,
      sessionId: r.sessionId,
      ttlMs: r.ttlMs,
      waitMs: r.waitMs,
      signal,
      ...(lockId === undefined ? {} : { lockId }),
    });
    return lockToProto(lock);
  }

  async #updatePresence(r: pb.UpdatePresenceRequest): Promise<pb.UpdatePresenceResponse> {
    const id = documentId(r.documentId);
    const who = actor(r.actorId);
    await this.#documents.assertCanRead(who, id);
    if (r.stateJson === "") {
      this.#presence.leave(id, who);
    } else {
      const state: Json = jsonFromText(r.stateJson, "state_json");
      this.#presence.update(id, who, { sessionId: r.sessionId, state, ttlMs: r.ttlMs });
    }
    return {};
  }

  // ---- SubscribeDocument ----------------------------------------------------------------------

  async #subscribe(call: ServerWritableStream<pb.SubscribeDocumentRequest, pb.DocumentEvent>) {
    const ended = await this.#runSubscription(call.request, {
      get cancelled() {
        return call.cancelled;
      },
      onCancel: (close) => call.on("cancelled", close),
      write: (event) => call.write(event),
      drained: (closed) =>
        new Promise<void>((resolve) => {
          const done = () => {
            call.off("drain", done);
            resolve();
          };
          call.on("drain", done);
          closed.then(done);
        }),
    });
    if (call.cancelled) return;
    if (ended === undefined) call.end();
    else call.emit("error", ended.toServiceError());
    // grpc-js sends the status from the stream's final step: wait for it, so a shutdown that
    // awaits this handler never closes the connection before the status is on its way.
    if (!call.writableFinished) {
      await new Promise<void>((resolve) => {
        call.once("finish", resolve);
        call.once("close", resolve);
      });
    }
  }

  /** SubscribeDocuments: many subscriptions over one stream, their events batched per turn. */
  #subscribeMany(call: ServerDuplexStream<pb.SubscriptionControl, pb.DocumentEventBatch>): void {
    const mux = serveSubscriptionMux(
      call,
      (request, output) => this.#runSubscription(request, output),
    );
    const stream = {
      stop: () => {
        mux.stop(new AppError("UNAVAILABLE", "Server is shutting down"));
        return mux.finished;
      },
    };
    this.#streams.add(stream);
    void mux.finished.then(() => this.#streams.delete(stream));
  }

  /**
   * Run one subscription until it ends, writing its events to `output`.
   * @returns undefined when it ended gracefully, else the error that ended it
   */
  async #runSubscription(
    r: pb.SubscribeDocumentRequest,
    output: SubscriptionOutput,
  ): Promise<AppError | undefined> {
    let sub;
    let who = "";
    let id = "";
    try {
      if (this.#closing) throw new AppError("UNAVAILABLE", "Server is shutting down");
      who = actor(r.actorId);
      id = documentId(r.documentId);
      if (r.fromVersion !== undefined && !Number.isSafeInteger(r.fromVersion)) {
        throw new RangeError("Invalid from_version: out of range");
      }
      await this.#documents.assertCanRead(who, id);
      // Register first (buffering), then read the version, then catch up: no gap.
      sub = this.#hub.subscribe(id, {
        ...(r.subscriberId === "" ? {} : { subscriberId: r.subscriberId }),
        userId: who,
        sessionId: r.sessionId,
      });
    } catch (error) {
      return this.#toAppError(error);
    }
    const subscription = sub;
    output.onCancel(() => subscription.close());
    try {
      this.#presence.attach(id, who);
    } catch (error) {
      subscription.close();
      return this.#toAppError(error);
    }
    try {
      const doc = await this.#documents.assertCanRead(who, id);
      subscription.resume({
        currentVersion: doc.version,
        ...(r.fromVersion === undefined ? {} : { fromVersion: r.fromVersion }),
        history: (fromVersion, pageToken) =>
          this.#documents.history(who, id, {
            fromVersion,
            pageSize: this.#historyPageSize,
            pageToken,
          }),
      });
      for (;;) {
        const step = await subscription.next();
        if (step.done || output.cancelled) return undefined;
        const event = step.value;
        // Permission and state changes apply to open subscriptions too.
        const changed = event.type === "document_updated" ? event.document : undefined;
        if (changed !== undefined && !canRead(changed, who)) {
          throw new AppError("PERMISSION_DENIED", `User ${who} may no longer read document ${id}`);
        }
        if (!output.write(sharedEventProto(event))) {
          // Backpressure: stop draining our queue until the receiver catches up; the bounded
          // queue disconnects the subscriber if it stays stuck.
          await output.drained(subscription.closed);
        }
        if (changed?.state === "deleted") {
          throw new AppError("NOT_FOUND", `Document ${id} was deleted`);
        }
      }
    } catch (error) {
      subscription.close();
      return this.#toAppError(error);
    } finally {
      this.#presence.detach(id, who);
    }
  }

  // ---- SubmitOperations / SubmitOperationBatches ----------------------------------------------

  #submitOperations(call: ServerDuplexStream<pb.SubmitRequest, pb.SubmitResult>): void {
    this.#pump(call, {
      weight: () => 1,
      // Answered in order per document; different documents do not wait for each other.
      orderKey: (request) => request.apply?.operation?.documentId ?? "",
      handle: (request) => this.#submitOne(request),
    });
  }

  #submitBatches(call: ServerDuplexStream<pb.SubmitBatch, pb.SubmitBatchResult>): void {
    this.#pump(call, {
      weight: (batch) => Math.max(1, batch.requests.length),
      // One answer per batch, in batch order.
      orderKey: () => "",
      handle: async (batch) => ({
        results: await Promise.all(batch.requests.map((request) => this.#submitOne(request))),
      }),
    });
  }

  /**
   * One submit request → its result (errors become an `error` outcome, never a broken stream),
   * in a server span that continues the request's own `traceparent`.
   */
  #submitOne(request: pb.SubmitRequest): Promise<pb.SubmitResult> {
    const parent = contextFromTraceparent(request.traceparent);
    const span = tracer.startSpan(SUBMIT_SPAN_NAME, SUBMIT_SPAN_OPTIONS, parent);
    return withSpan(span, () => this.#apply(request.apply, SUBMIT_APPLY_FIELDS), parent).then(
      (value): pb.SubmitResult => {
        span.setAttribute("rpc.grpc.status_code", 0);
        span.end();
        return { requestId: request.requestId, outcome: { $case: "applied", value } };
      },
      (error): pb.SubmitResult => {
        const appError = this.#toAppError(error);
        span.setAttribute("rpc.grpc.status_code", appError.code);
        // Only server faults are span errors; a rejected operation is the caller's.
        if (appError.httpStatus >= 500) recordSpanError(span, appError);
        span.end();
        return {
          requestId: request.requestId,
          outcome: {
            $case: "error",
            value: { code: appError.code, message: appError.message },
          },
        };
      },
    );
  }

  /**
   * Drive a bidirectional submit stream: every message is handled at once (so the engine
   * group-commits concurrent ops), answers go out in order per `orderKey`, reading pauses
   * while `maxInFlightPerStream` ops are pending or grpc-js reports backpressure, and the
   * stream completes after the client half-closes and every answer is written.
   */
  #pump<In, Out>(
    call: ServerDuplexStream<In, Out>,
    options: {
      weight: (message: In) => number;
      orderKey: (message: In) => string;
      handle: (message: In) => Promise<Out>;
    },
  ): void {
    const tails = new Map<string, Promise<void>>();
    let inFlight = 0;
    let ended = false;
    let finished = false;
    let writeBlocked = false;
    let readPaused = false;
    let resolveStopped!: () => void;
    const stopped = new Promise<void>((resolve) => (resolveStopped = resolve));
    const finish = () => {
      if (finished || !ended || inFlight > 0) return;
      finished = true;
      this.#streams.delete(stream);
      if (!call.cancelled) call.end();
      resolveStopped();
    };
    const stream = {
      stop: () => {
        ended = true;
        call.pause();
        finish();
        return stopped;
      },
    };
    this.#streams.add(stream);

    const updateFlow = () => {
      const shouldPause = writeBlocked || inFlight >= this.#maxInFlight;
      if (shouldPause && !readPaused) {
        readPaused = true;
        call.pause();
      } else if (!shouldPause && readPaused && !ended) {
        readPaused = false;
        call.resume();
      }
    };
    const write = (result: Out) => {
      if (call.cancelled || finished) return;
      if (!call.write(result) && !writeBlocked) {
        writeBlocked = true;
        updateFlow();
        call.once("drain", () => {
          writeBlocked = false;
          updateFlow();
        });
      }
    };

    call.on("data", (message: In) => {
      if (ended) return;
      const weight = options.weight(message);
      inFlight += weight;
      updateFlow();
      const key = options.orderKey(message);
      const outcome = options.handle(message);
      const tail = (tails.get(key) ?? Promise.resolve()).then(() => outcome).then(write);
      tails.set(key, tail);
      tail.finally(() => {
        if (tails.get(key) === tail) tails.delete(key);
        inFlight -= weight;
        updateFlow();
        finish();
      });
    });
    const onEnd = () => {
      ended = true;
      finish();
    };
    call.on("end", onEnd);
    call.on("cancelled", onEnd);
    call.on("error", onEnd);
  }
}

/** One writer for every submit answer: its buffer stays grown instead of regrowing per message. */
const answerWriter = new BinaryWriter();

/**
 * Encode with the shared writer. `finish()` returns a fresh copy of the bytes, which the
 * Buffer wraps without a second copy (the generated serializer copies them again).
 */
function encodeAnswer<T>(
  encode: (message: T, writer: BinaryWriter) => unknown,
  message: T,
): Buffer {
  try {
    encode(message, answerWriter);
  } catch (error) {
    answerWriter.finish(); // reset a half-written message
    throw error;
  }
  const bytes = answerWriter.finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The service definition with cheaper answer serializers for the two submit streams. */
const SERVICE_DEFINITION: typeof pb.StateSyncServiceService = {
  ...pb.StateSyncServiceService,
  submitOperations: {
    ...pb.StateSyncServiceService.submitOperations,
    responseSerialize: (value: pb.SubmitResult) => encodeAnswer(pb.SubmitResult.encode, value),
  },
  submitOperationBatches: {
    ...pb.StateSyncServiceService.submitOperationBatches,
    responseSerialize: (value: pb.SubmitBatchResult) =>
      encodeAnswer(pb.SubmitBatchResult.encode, value),
  },
};

/** A running StateSync gRPC server. */
export interface RunningServer {
  /** The bound TCP port. */
  readonly port: number;
  /** The grpc-js server (e.g. to add a Quantum listener). */
  readonly server: Server;
  /** Health status shared by Check and Watch. */
  readonly health: HealthState;
  /**
   * Graceful shutdown without an HTTP/2 GOAWAY (it can crash a Deno client, see
   * `kernel/call_gate.ts`): stop accepting, report NOT_SERVING, refuse new calls with
   * UNAVAILABLE, end the streams, wait for calls in flight (up to `graceMs`), linger while
   * their responses are written, then release the transport (`forceShutdown`) unless
   * `options.releaseTransport` is false (the process is about to exit).
   */
  close(graceMs?: number, options?: { releaseTransport?: boolean }): Promise<void>;
}

/**
 * Serve StateSync and grpc.health.v1 over TCP.
 * @throws {Error} when the address cannot be bound
 */
export async function startStateSyncServer(
  service: StateSyncService,
  options: {
    hostname?: string;
    port?: number;
    /**
     * Accept connections through a guard that drops incoming HTTP/2 GOAWAY frames, which
     * crash Deno 2.9's nghttp2 (see `kernel/grpc_guard.ts`; default true).
     */
    guardGoaway?: boolean;
    /** How long shutdown waits after the last call before releasing the transport, ms. */
    shutdownLingerMs?: number;
    /** gRPC call metrics (default: counted on a registry nobody serves). */
    grpcMetrics?: GrpcServerMetrics;
  } = {},
): Promise<RunningServer> {
  const server = new Server({ "grpc.max_receive_message_length": 8 * 1024 * 1024 });
  const health = new HealthState([STATESYNC_SERVICE_NAME]);
  const grpc = options.grpcMetrics ?? new GrpcServerMetrics(new Registry());
  const gate = new CallGate();
  const handlers = gateHandlers(SERVICE_DEFINITION, service.handlers(), gate, {
    message: "StateSync service is shutting down",
  });
  server.addService(
    SERVICE_DEFINITION,
    grpc.instrument(SERVICE_DEFINITION, handlers, {
      hooks: [grpcServerTracing("aetherflow-statesync")],
    }),
  );
  addHealthService(server, health);
  const hostname = options.hostname ?? "127.0.0.1";
  let port: number;
  let guard: GuardedListener | undefined;
  if (options.guardGoaway ?? true) {
    guard = await listenGuarded(server, { hostname, port: options.port ?? 0 });
    port = guard.port;
  } else {
    port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(
        `${hostname}:${options.port ?? 0}`,
        ServerCredentials.createInsecure(),
        (error, bound) => (error ? reject(error) : resolve(bound)),
      );
    });
  }
  let closing: Promise<void> | undefined;
  return {
    port,
    server,
    health,
    close(graceMs = 5000, closeOptions = {}) {
      closing ??= (async () => {
        await guard?.close();
        health.shutdown();
        gate.close(); // before the streams end, so no new call slips in meanwhile
        await service.closeStreams();
        await drainCalls(gate, { timeoutMs: graceMs, lingerMs: options.shutdownLingerMs ?? 100 });
      })();
      if (closeOptions.releaseTransport === false) return closing;
      return closing.then(() => server.forceShutdown());
    },
  };
}

// ---- validation helpers --------------------------------------------------------------------------

/** Map anything thrown to an AppError; json0 OpErrors keep their status. */
export function toAppError(error: unknown): AppError {
  if (error instanceof OpError) return new AppError(error.status, error.message, { cause: error });
  return AppError.from(error);
}

function required(value: string, field: string): string {
  if (value === "") throw new TypeError(`Invalid ${field}: required`);
  return value;
}

function actor(value: string, field = "actor_id"): string {
  return required(value, field);
}

function documentId(value: string): string {
  return parseId(value, "document_id");
}

function canRead(document: DocumentRecord, userId: string): boolean {
  if (document.state === "deleted") return true; // reported as NOT_FOUND after the event
  const p = document.permissions;
  return document.ownerId === userId || p.publicRead || p.editors.includes(userId) ||
    p.viewers.includes(userId);
}

function pageSize(value: number): number {
  if (value === 0) return DEFAULT_PAGE_SIZE;
  if (value > MAX_PAGE_SIZE) {
    throw new RangeError(`Invalid page_size: expected 1..${MAX_PAGE_SIZE}`);
  }
  return value;
}
