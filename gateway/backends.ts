/**
 * The services behind the gateway, as small interfaces. Route handlers and the WebSocket
 * hub only see these; `createGrpcBackends` (grpc_backends.ts) implements them with the
 * generated grpc-js clients, and tests may pass in-process implementations.
 * @module
 */
import type {
  CreateSessionRequest,
  CreateSessionResponse,
  DeleteSessionRequest,
  DeleteSessionResponse,
  GetSessionRequest,
  HeartbeatRequest,
  HeartbeatResponse,
  ListSessionsRequest,
  ListSessionsResponse,
  RotateTokenRequest,
  RotateTokenResponse,
  Session,
  UpdateSessionRequest,
} from "../proto/gen/session.ts";
import type {
  AcquireLockRequest,
  ApplyOperationRequest,
  ApplyOperationResponse,
  CreateDocumentRequest,
  DeleteDocumentRequest,
  DeleteDocumentResponse,
  Document,
  DocumentEvent,
  GetDocumentRequest,
  GetOperationHistoryRequest,
  GetOperationHistoryResponse,
  GetPresenceRequest,
  GetPresenceResponse,
  GetStatsRequest,
  IsLockedRequest,
  IsLockedResponse,
  ListConflictsRequest,
  ListConflictsResponse,
  ListDocumentsRequest,
  ListDocumentsResponse,
  Lock,
  ReleaseLockRequest,
  ReleaseLockResponse,
  ResolveConflictRequest,
  ResolveConflictResponse,
  Stats,
  SubmitRequest,
  SubmitResult,
  SubscribeDocumentRequest,
  UnsubscribeDocumentRequest,
  UnsubscribeDocumentResponse,
  UpdateDocumentRequest,
  UpdatePresenceRequest,
  UpdatePresenceResponse,
} from "../proto/gen/statesync.ts";

/** Per-call options: the request's deadline and ids to pass on as gRPC metadata. */
export interface CallOptions {
  /** Absolute deadline, epoch ms (the remaining request budget). */
  deadline?: number;
  /** Passed as `x-request-id` metadata. */
  requestId?: string;
  /** W3C trace context, passed as `traceparent` metadata. */
  traceparent?: string;
}

/** The session service. */
export interface SessionBackend {
  createSession(req: CreateSessionRequest, opts?: CallOptions): Promise<CreateSessionResponse>;
  getSession(req: GetSessionRequest, opts?: CallOptions): Promise<Session>;
  updateSession(req: UpdateSessionRequest, opts?: CallOptions): Promise<Session>;
  deleteSession(req: DeleteSessionRequest, opts?: CallOptions): Promise<DeleteSessionResponse>;
  listSessions(req: ListSessionsRequest, opts?: CallOptions): Promise<ListSessionsResponse>;
  heartbeat(req: HeartbeatRequest, opts?: CallOptions): Promise<HeartbeatResponse>;
  rotateToken(req: RotateTokenRequest, opts?: CallOptions): Promise<RotateTokenResponse>;
}

/** Callbacks of a server stream. */
export interface StreamHandlers<T> {
  onData(message: T): void;
  /** The stream failed (gRPC error converted to AppError). */
  onError(error: unknown): void;
  /** The server ended the stream. */
  onEnd(): void;
}

/** A running server stream. */
export interface StreamHandle {
  /** Cancel the stream (no callbacks follow). */
  cancel(): void;
}

/** The client side of the submit stream (SubmitOperationBatches over gRPC). */
export interface SubmitStream extends StreamHandle {
  /** Queue one request; results arrive through the handlers. */
  send(req: SubmitRequest): void;
}

/** The statesync service. */
export interface StateSyncBackend {
  createDocument(req: CreateDocumentRequest, opts?: CallOptions): Promise<Document>;
  getDocument(req: GetDocumentRequest, opts?: CallOptions): Promise<Document>;
  updateDocument(req: UpdateDocumentRequest, opts?: CallOptions): Promise<Document>;
  deleteDocument(req: DeleteDocumentRequest, opts?: CallOptions): Promise<DeleteDocumentResponse>;
  listDocuments(req: ListDocumentsRequest, opts?: CallOptions): Promise<ListDocumentsResponse>;
  applyOperation(req: ApplyOperationRequest, opts?: CallOptions): Promise<ApplyOperationResponse>;
  getOperationHistory(
    req: GetOperationHistoryRequest,
    opts?: CallOptions,
  ): Promise<GetOperationHistoryResponse>;
  unsubscribeDocument(
    req: UnsubscribeDocumentRequest,
    opts?: CallOptions,
  ): Promise<UnsubscribeDocumentResponse>;
  acquireLock(req: AcquireLockRequest, opts?: CallOptions): Promise<Lock>;
  releaseLock(req: ReleaseLockRequest, opts?: CallOptions): Promise<ReleaseLockResponse>;
  isLocked(req: IsLockedRequest, opts?: CallOptions): Promise<IsLockedResponse>;
  listConflicts(req: ListConflictsRequest, opts?: CallOptions): Promise<ListConflictsResponse>;
  resolveConflict(
    req: ResolveConflictRequest,
    opts?: CallOptions,
  ): Promise<ResolveConflictResponse>;
  updatePresence(req: UpdatePresenceRequest, opts?: CallOptions): Promise<UpdatePresenceResponse>;
  getPresence(req: GetPresenceRequest, opts?: CallOptions): Promise<GetPresenceResponse>;
  getStats(req: GetStatsRequest, opts?: CallOptions): Promise<Stats>;
  /** Open a SubscribeDocument stream. */
  subscribeDocument(
    req: SubscribeDocumentRequest,
    handlers: StreamHandlers<DocumentEvent>,
  ): StreamHandle;
  /** Open the submit stream: one result per request, in order per document. */
  submitOperations(handlers: StreamHandlers<SubmitResult>): SubmitStream;
}

/** A backend's health as /health reports it. */
export interface BackendHealth {
  /** "SERVING", "NOT_SERVING" or "UNREACHABLE". */
  status: "SERVING" | "NOT_SERVING" | "UNREACHABLE";
  required: boolean;
  transport: "tcp" | "quantum" | "in-process";
  address: string;
  /** Check duration in ms. */
  latencyMs: number;
  error?: string;
}

/** Everything the gateway talks to. */
export interface Backends {
  session: SessionBackend;
  statesync: StateSyncBackend;
  /** Check every backend (bounded by `timeoutMs`). */
  health(timeoutMs?: number): Promise<Record<string, BackendHealth>>;
  /** Close connections and tunnels. */
  close(): Promise<void>;
}

/** The session service's unary methods, as named on {@link SessionBackend}. */
export const SESSION_UNARY_METHODS = [
  "createSession",
  "getSession",
  "updateSession",
  "deleteSession",
  "listSessions",
  "heartbeat",
  "rotateToken",
] as const;

/** The statesync service's unary methods, as named on {@link StateSyncBackend}. */
export const STATESYNC_UNARY_METHODS = [
  "createDocument",
  "getDocument",
  "updateDocument",
  "deleteDocument",
  "listDocuments",
  "applyOperation",
  "getOperationHistory",
  "unsubscribeDocument",
  "acquireLock",
  "releaseLock",
  "isLocked",
  "listConflicts",
  "resolveConflict",
  "updatePresence",
  "getPresence",
  "getStats",
] as const;

/** Methods safe to retry (on the same or another instance): reads and heartbeats. */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set([
  "getSession",
  "listSessions",
  "getDocument",
  "listDocuments",
  "getOperationHistory",
  "isLocked",
  "listConflicts",
  "getPresence",
  "getStats",
  "heartbeat",
]);
