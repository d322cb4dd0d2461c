/**
 * gRPC binding of {@link SessionManager}: `aetherflow.session.v1.SessionService` from
 * proto/session.proto (generated code in proto/gen/session.ts) plus the standard health
 * service. Errors leave as gRPC statuses via `AppError`: caller mistakes are
 * INVALID_ARGUMENT with the field named, unknown sessions NOT_FOUND; only genuine faults are
 * INTERNAL (and logged).
 *
 * @example
 * ```ts
 * const health = new HealthState();
 * const server = createSessionServer(manager, { health });
 * server.bindAsync("127.0.0.1:50051", ServerCredentials.createInsecure(), () => {});
 * ```
 * @module
 */
import { type sendUnaryData, Server, type ServerUnaryCall } from "@grpc/grpc-js";
import {
  addHealthService,
  AppError,
  CallGate,
  currentTraceId,
  GrpcServerMetrics,
  grpcServerTracing,
  HealthState,
  type Logger,
  Registry,
  silentLogger,
} from "../kernel/mod.ts";
import {
  type Session as ProtoSession,
  type SessionServiceServer,
  SessionServiceService,
  SessionState as ProtoState,
} from "../proto/gen/session.ts";
import type { SessionManager, SessionUpdate } from "./manager.ts";
import type { Session, SessionState } from "./model.ts";
import { requireId } from "./_validate.ts";

/** Fully qualified name of the session service (also its health-check name). */
export const SESSION_SERVICE_NAME = "aetherflow.session.v1.SessionService";

/** Options for {@link createSessionServer} and {@link sessionServiceHandlers}. */
export interface SessionServerOptions {
  /** Where INTERNAL failures are logged (default: silent). */
  logger?: Logger;
  /** Health service to register; the session service is marked SERVING in it. */
  health?: HealthState;
  /** Counts calls in flight and refuses new ones (UNAVAILABLE) once closed, for draining. */
  gate?: CallGate;
  /** Options passed to the grpc-js `Server` constructor. */
  serverOptions?: ConstructorParameters<typeof Server>[0];
  /** gRPC call metrics (default: counted on a registry nobody serves). */
  grpcMetrics?: GrpcServerMetrics;
}

const UPDATE_FIELDS = new Set(["state", "metadata", "stats", "connection_id", "server_address"]);

const TO_PROTO_STATE: Record<SessionState, ProtoState> = {
  active: ProtoState.SESSION_STATE_ACTIVE,
  idle: ProtoState.SESSION_STATE_IDLE,
  expired: ProtoState.SESSION_STATE_EXPIRED,
  terminated: ProtoState.SESSION_STATE_TERMINATED,
};

/** A session in its protobuf shape. */
export function toProtoSession(session: Session): ProtoSession {
  return {
    id: session.id,
    userId: session.userId,
    connectionId: session.connectionId,
    clientIp: session.clientIp,
    clientPort: session.clientPort,
    serverAddress: session.serverAddress,
    state: TO_PROTO_STATE[session.state],
    createdAt: session.createdAt,
    lastActiveAt: session.lastActiveAt,
    expiresAt: session.expiresAt,
    metadata: session.metadata,
    stats: session.stats,
  };
}

/** The model state for a protobuf state; UNSPECIFIED and unknown values are caller mistakes. */
export function fromProtoState(state: ProtoState, field = "state"): SessionState {
  for (const [name, value] of Object.entries(TO_PROTO_STATE)) {
    if (value === state) return name as SessionState;
  }
  throw new RangeError(`Invalid ${field}: unknown or unspecified session state`);
}

/** The service implementation, for adding to an existing grpc-js server. */
export function sessionServiceHandlers(
  manager: SessionManager,
  options: SessionServerOptions = {},
): SessionServiceServer {
  const logger = options.logger ?? silentLogger;
  const gate = options.gate ?? new CallGate();
  const unary =
    <Req, Res>(method: string, run: (request: Req) => Promise<Res>) =>
    (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      if (!gate.enter()) {
        callback(new AppError("UNAVAILABLE", "Session service is shutting down").toServiceError());
        return;
      }
      let pending: Promise<Res>;
      try {
        pending = run(call.request);
      } catch (error) {
        pending = Promise.reject(error);
      }
      pending.then(
        (response) => callback(null, response),
        (error: unknown) => {
          const appError = AppError.from(error);
          if (appError.status === "INTERNAL") {
            logger.error("Session call failed", {
              method,
              error: appError.cause ?? error,
              request_id: call.metadata.get("x-request-id")[0]?.toString(),
              trace_id: currentTraceId(),
            });
          }
          callback(appError.toServiceError());
        },
      ).finally(() => gate.leave());
    };

  return {
    createSession: unary("CreateSession", async (request) => {
      const { session, token } = await manager.create({
        userId: request.userId,
        connectionId: request.connectionId,
        clientIp: request.clientIp,
        clientPort: request.clientPort,
        serverAddress: request.serverAddress,
        ttlSeconds: request.ttlSeconds,
        metadata: request.metadata,
      });
      return { session: toProtoSession(session), token };
    }),
    getSession: unary("GetSession", async (request) => {
      const selector = request.selector;
      if (selector === undefined) {
        throw new TypeError("Missing selector: set one of session_id, connection_id, token");
      }
      switch (selector.$case) {
        case "sessionId":
          return toProtoSession(await manager.get(selector.value));
        case "connectionId":
          return toProtoSession(await manager.getByConnectionId(selector.value));
        case "token":
          return toProtoSession(await manager.getByToken(selector.value));
      }
    }),
    updateSession: unary("UpdateSession", async (request) => {
      requireId(request.sessionId, "session_id");
      if (request.updateMask.length === 0) throw new TypeError("Missing update_mask");
      const update: SessionUpdate = {};
      for (const field of request.updateMask) {
        if (!UPDATE_FIELDS.has(field)) {
          throw new TypeError(
            `Invalid update_mask: unknown field "${field.slice(0, 64)}" (allowed: ${
              [...UPDATE_FIELDS].join(", ")
            })`,
          );
        }
      }
      const mask = new Set(request.updateMask);
      if (mask.has("state")) update.state = fromProtoState(request.state);
      if (mask.has("metadata")) update.metadata = request.metadata;
      if (mask.has("stats")) {
        update.stats = request.stats ??
          { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, operations: 0 };
      }
      if (mask.has("connection_id")) update.connectionId = request.connectionId;
      if (mask.has("server_address")) update.serverAddress = request.serverAddress;
      return toProtoSession(await manager.update(request.sessionId, update));
    }),
    deleteSession: unary("DeleteSession", async (request) => {
      await manager.delete(request.sessionId);
      return {};
    }),
    listSessions: unary("ListSessions", async (request) => {
      const page = await manager.list({
        userId: request.userId === "" ? undefined : request.userId,
        state: request.state === ProtoState.SESSION_STATE_UNSPECIFIED
          ? undefined
          : fromProtoState(request.state),
        createdAfter: request.createdAfter === 0 ? undefined : request.createdAfter,
        createdBefore: request.createdBefore === 0 ? undefined : request.createdBefore,
      }, { pageSize: request.pageSize, pageToken: request.pageToken });
      return {
        sessions: page.sessions.map(toProtoSession),
        nextPageToken: page.nextPageToken,
        totalCount: page.totalCount,
      };
    }),
    heartbeat: unary("Heartbeat", async (request) => {
      const session = await manager.heartbeat(request.sessionId, {
        ttlSeconds: request.ttlSeconds,
      });
      return { session: toProtoSession(session) };
    }),
    rotateToken: unary("RotateToken", async (request) => {
      const { session, token } = await manager.rotateToken(request.token);
      return { session: toProtoSession(session), token };
    }),
  };
}

/**
 * A grpc-js server with the session service and the health service registered (not yet
 * bound: call `bindAsync`, or inject connections from another transport).
 */
export function createSessionServer(
  manager: SessionManager,
  options: SessionServerOptions = {},
): Server {
  const server = new Server(options.serverOptions);
  // Every call is counted and runs in a server span continuing the caller's traceparent.
  const grpc = options.grpcMetrics ?? new GrpcServerMetrics(new Registry());
  server.addService(
    SessionServiceService,
    grpc.instrument(SessionServiceService, sessionServiceHandlers(manager, options), {
      hooks: [grpcServerTracing("aetherflow-session")],
    }),
  );
  const health = options.health ?? new HealthState();
  health.setStatus(SESSION_SERVICE_NAME, "SERVING");
  addHealthService(server, health);
  return server;
}
