/**
 * Test support: an in-memory stand-in for the session and statesync services with just
 * enough behaviour for handler and WebSocket protocol tests (sessions with token rotation
 * and reuse detection; documents with versions, history, events and a submit stream, text
 * inserts applied without transformation). End-to-end tests use the real services.
 * @module
 */
import { AppError, newId } from "../kernel/mod.ts";
import { type Session, SessionState } from "../proto/gen/session.ts";
import {
  ConflictStrategy,
  type Document,
  type DocumentEvent,
  DocumentState,
  DocumentType,
  EventType,
  type Operation,
} from "../proto/gen/statesync.ts";
import type { Backends, SessionBackend, StreamHandlers } from "./backends.ts";
import { type GatewayConfig, GatewayConfigSchema } from "./config.ts";
import type { TokenService } from "./tokens.ts";
import { UserStore } from "./users.ts";

/** Knobs for failure injection. */
export interface FakeControl {
  /** When set, every statesync unary call fails with this status. */
  statesyncDown: boolean;
  /** Calls seen, by method name. */
  calls: Map<string, number>;
  /** Deadlines (epoch ms) seen, by method name (last one). */
  deadlines: Map<string, number | undefined>;
  /** Call options seen, by method name (last one). */
  options: Map<string, unknown>;
  /** Open document subscription streams. */
  subscriptions: number;
  /** Open submit streams. */
  submitStreams: number;
  /** End every open document subscription with `error` (as a dropped stream would). */
  failSubscriptions(error: unknown): void;
  /** Resolves when the next SubscribeDocument stream goes live. */
  nextSubscribed(): Promise<{ fromVersion: number | undefined }>;
  /** Resolves when SubscribeDocument is next called (live or not). */
  nextSubscribeCall(): Promise<void>;
  /** Requests seen, by method name (last one). */
  requests: Map<string, unknown>;
  /** Resolves with the request of the next call of `method`. */
  nextCall(method: string): Promise<unknown>;
}

/** In-memory backends plus their control panel. */
export function fakeBackends(): Backends & { control: FakeControl } {
  const control: FakeControl = {
    statesyncDown: false,
    calls: new Map(),
    deadlines: new Map(),
    options: new Map(),
    subscriptions: 0,
    submitStreams: 0,
    failSubscriptions(error) {
      for (const set of listeners.values()) {
        for (const handlers of [...set]) {
          set.delete(handlers);
          control.subscriptions--;
          handlers.onError(error);
        }
      }
    },
    nextSubscribed() {
      return new Promise((resolve) => subscribedWaiters.push(resolve));
    },
    nextSubscribeCall() {
      return new Promise((resolve) => callWaiters.push(resolve));
    },
    requests: new Map(),
    nextCall(method) {
      return new Promise((resolve) => {
        const list = methodWaiters.get(method) ?? [];
        list.push(resolve);
        methodWaiters.set(method, list);
      });
    },
  };
  const methodWaiters = new Map<string, Array<(req: unknown) => void>>();
  const record = (method: string, req: unknown) => {
    control.requests.set(method, req);
    const waiters = methodWaiters.get(method) ?? [];
    methodWaiters.delete(method);
    for (const waiter of waiters) waiter(req);
  };
  let callWaiters: Array<() => void> = [];
  let subscribedWaiters: Array<(info: { fromVersion: number | undefined }) => void> = [];
  const sessions = new Map<string, Session>();
  const tokens = new Map<string, { sessionId: string; current: boolean }>();
  const docs = new Map<string, Document>();
  const history = new Map<string, Operation[]>();
  const listeners = new Map<string, Set<StreamHandlers<DocumentEvent>>>();

  const seen = (method: string, opts?: { deadline?: number }) => {
    control.calls.set(method, (control.calls.get(method) ?? 0) + 1);
    control.deadlines.set(method, opts?.deadline);
    control.options.set(method, opts);
  };
  const down = () => {
    if (control.statesyncDown) throw new AppError("UNAVAILABLE", "statesync is down");
  };
  const issue = (sessionId: string) => {
    // Random like the session service's tokens (UUIDv7s would share prefixes with request ids).
    const token = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))
      .replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "");
    tokens.set(token, { sessionId, current: true });
    return token;
  };
  const liveSession = (id: string) => {
    const session = sessions.get(id);
    if (session === undefined) throw new AppError("NOT_FOUND", "Session not found");
    return session;
  };
  const doc = (id: string) => {
    const d = docs.get(id);
    if (d === undefined) throw new AppError("NOT_FOUND", "Document not found");
    return d;
  };
  const emit = (documentId: string, event: DocumentEvent) => {
    for (const handlers of listeners.get(documentId) ?? []) handlers.onData(event);
  };
  const apply = (actorId: string, op: Operation) => {
    const d = doc(op.documentId);
    if (op.baseVersion > d.version) {
      throw new AppError("FAILED_PRECONDITION", "Version ahead of the document");
    }
    const previous = (history.get(d.id) ?? []).find((o) =>
      op.clientOpId !== "" && o.clientOpId === op.clientOpId && o.sessionId === op.sessionId
    );
    if (previous) {
      return {
        operation: previous,
        version: d.version,
        duplicate: true,
        conflicts: [],
        held: false,
      };
    }
    const content = JSON.parse(d.contentJson || "{}");
    for (const c of op.components) {
      if (c.action?.$case === "textInsert") {
        const text = String(content.text ?? "");
        const at = Math.min(c.action.value.offset, text.length);
        content.text = text.slice(0, at) + c.action.value.text + text.slice(at);
      } else if (c.action?.$case === "set" && c.path[0]?.element?.$case === "key") {
        content[c.path[0].element.value] = JSON.parse(c.action.value.valueJson);
      }
    }
    d.version++;
    d.contentJson = JSON.stringify(content);
    const applied: Operation = {
      ...op,
      id: newId(),
      authorId: actorId,
      version: d.version,
      timestamp: Date.now(),
    };
    history.get(d.id)!.push(applied);
    emit(d.id, {
      type: EventType.EVENT_TYPE_OPERATION_APPLIED,
      documentId: d.id,
      version: d.version,
      timestamp: applied.timestamp,
      userId: actorId,
      payload: { $case: "operation", value: applied },
    });
    return { operation: applied, version: d.version, duplicate: false, conflicts: [], held: false };
  };

  return {
    control,
    session: {
      createSession(req, opts) {
        seen("createSession", opts);
        const now = Date.now();
        const session: Session = {
          id: newId(),
          userId: req.userId,
          connectionId: req.connectionId,
          clientIp: req.clientIp,
          clientPort: req.clientPort,
          serverAddress: req.serverAddress,
          state: SessionState.SESSION_STATE_ACTIVE,
          createdAt: now,
          lastActiveAt: now,
          expiresAt: now + (req.ttlSeconds || 3600) * 1000,
          metadata: req.metadata,
          stats: undefined,
        };
        sessions.set(session.id, session);
        return Promise.resolve({ session, token: issue(session.id) });
      },
      getSession(req, opts) {
        seen("getSession", opts);
        if (req.selector?.$case !== "sessionId") throw new AppError("UNIMPLEMENTED", "fake");
        return Promise.resolve(liveSession(req.selector.value));
      },
      updateSession(req, opts) {
        seen("updateSession", opts);
        record("updateSession", req);
        const s = liveSession(req.sessionId);
        if (req.updateMask.includes("state")) s.state = req.state;
        if (req.updateMask.includes("metadata")) s.metadata = req.metadata;
        return Promise.resolve(s);
      },
      deleteSession(req, opts) {
        seen("deleteSession", opts);
        liveSession(req.sessionId);
        sessions.delete(req.sessionId);
        return Promise.resolve({});
      },
      listSessions(req, opts) {
        seen("listSessions", opts);
        const list = [...sessions.values()].filter((s) => !req.userId || s.userId === req.userId);
        return Promise.resolve({ sessions: list, nextPageToken: "", totalCount: list.length });
      },
      heartbeat(req, opts) {
        seen("heartbeat", opts);
        record("heartbeat", req);
        const s = liveSession(req.sessionId);
        s.expiresAt = Date.now() + (req.ttlSeconds || 3600) * 1000;
        return Promise.resolve({ session: s });
      },
      rotateToken(req, opts) {
        seen("rotateToken", opts);
        const entry = tokens.get(req.token);
        if (entry === undefined) return Promise.reject(new AppError("NOT_FOUND", "Unknown token"));
        if (!entry.current) {
          sessions.delete(entry.sessionId); // reuse: terminate the whole family
          return Promise.reject(new AppError("UNAUTHENTICATED", "Refresh token reused"));
        }
        const session = sessions.get(entry.sessionId);
        if (session === undefined) {
          return Promise.reject(new AppError("FAILED_PRECONDITION", "Session terminated"));
        }
        entry.current = false;
        return Promise.resolve({ session, token: issue(session.id) });
      },
    },
    statesync: {
      async createDocument(req, opts) {
        seen("createDocument", opts);
        down();
        const now = Date.now();
        const d: Document = {
          id: newId(),
          name: req.name,
          type: req.type || DocumentType.DOCUMENT_TYPE_JSON,
          state: DocumentState.DOCUMENT_STATE_ACTIVE,
          ownerId: req.actorId,
          permissions: req.permissions,
          version: 0,
          contentJson: req.contentJson ||
            (req.type === DocumentType.DOCUMENT_TYPE_TEXT ? '{"text":""}' : "{}"),
          activeUsers: [],
          createdAt: now,
          updatedAt: now,
          metadata: req.metadata,
          conflictStrategy: req.conflictStrategy || ConflictStrategy.CONFLICT_STRATEGY_MERGE,
        };
        docs.set(d.id, d);
        history.set(d.id, []);
        return await Promise.resolve({ ...d });
      },
      async getDocument(req, opts) {
        seen("getDocument", opts);
        down();
        return await Promise.resolve({ ...doc(req.documentId) });
      },
      async updateDocument(req, opts) {
        seen("updateDocument", opts);
        down();
        const d = doc(req.documentId);
        if (req.updateMask.includes("name")) d.name = req.name;
        return await Promise.resolve({ ...d });
      },
      async deleteDocument(req, opts) {
        seen("deleteDocument", opts);
        down();
        doc(req.documentId);
        docs.delete(req.documentId);
        return await Promise.resolve({});
      },
      async listDocuments(req, opts) {
        seen("listDocuments", opts);
        down();
        const list = [...docs.values()].filter((d) => !req.ownerId || d.ownerId === req.ownerId);
        return await Promise.resolve({ documents: list, nextPageToken: "" });
      },
      async applyOperation(req, opts) {
        seen("applyOperation", opts);
        down();
        return await Promise.resolve(apply(req.actorId, req.operation!));
      },
      async getOperationHistory(req, opts) {
        seen("getOperationHistory", opts);
        down();
        doc(req.documentId);
        const ops = history.get(req.documentId)!.filter((o) =>
          o.version > req.fromVersion && (req.toVersion === 0 || o.version <= req.toVersion)
        );
        return await Promise.resolve({ operations: ops, nextPageToken: "" });
      },
      async unsubscribeDocument(_req, opts) {
        seen("unsubscribeDocument", opts);
        return await Promise.resolve({});
      },
      async acquireLock(req, opts) {
        seen("acquireLock", opts);
        down();
        doc(req.documentId);
        const now = Date.now();
        return await Promise.resolve({
          id: newId(),
          documentId: req.documentId,
          path: req.path,
          ownerId: req.actorId,
          sessionId: req.sessionId,
          acquiredAt: now,
          expiresAt: now + (req.ttlMs || 30_000),
          fencingToken: 1,
        });
      },
      async releaseLock(req, opts) {
        seen("releaseLock", opts);
        down();
        doc(req.documentId);
        return await Promise.resolve({});
      },
      async isLocked(_req, opts) {
        seen("isLocked", opts);
        return await Promise.resolve({ locked: false, lock: undefined });
      },
      async listConflicts(req, opts) {
        seen("listConflicts", opts);
        down();
        doc(req.documentId);
        return await Promise.resolve({ conflicts: [], nextPageToken: "" });
      },
      async resolveConflict(_req, opts) {
        seen("resolveConflict", opts);
        down();
        return await Promise.reject(new AppError("NOT_FOUND", "Conflict not found"));
      },
      async updatePresence(req, opts) {
        seen("updatePresence", opts);
        down();
        emit(req.documentId, {
          type: EventType.EVENT_TYPE_PRESENCE_UPDATED,
          documentId: req.documentId,
          version: doc(req.documentId).version,
          timestamp: Date.now(),
          userId: req.actorId,
          payload: {
            $case: "presence",
            value: {
              userId: req.actorId,
              sessionId: req.sessionId,
              stateJson: req.stateJson,
              updatedAt: Date.now(),
              expiresAt: Date.now() + 30_000,
            },
          },
        });
        return await Promise.resolve({});
      },
      async getPresence(_req, opts) {
        seen("getPresence", opts);
        return await Promise.resolve({ presence: [] });
      },
      async getStats(_req, opts) {
        seen("getStats", opts);
        down();
        return await Promise.resolve({
          documents: docs.size,
          operations: [...history.values()].reduce((n, ops) => n + ops.length, 0),
          conflicts: 0,
          openConflicts: 0,
          subscribers: control.subscriptions,
          activeUsers: 0,
          locks: 0,
          transforms: 0,
        });
      },
      subscribeDocument(req, handlers) {
        seen("subscribeDocument");
        const calledWaiters = callWaiters;
        callWaiters = [];
        control.subscriptions++;
        let set = listeners.get(req.documentId);
        if (set === undefined) listeners.set(req.documentId, set = new Set());
        set.add(handlers);
        queueMicrotask(() => {
          const d = docs.get(req.documentId);
          if (d === undefined) {
            set.delete(handlers);
            control.subscriptions--;
            handlers.onError(new AppError("NOT_FOUND", "Document not found"));
            return;
          }
          if (control.statesyncDown) {
            set.delete(handlers);
            control.subscriptions--;
            handlers.onError(new AppError("UNAVAILABLE", "statesync is down"));
            return;
          }
          if (req.fromVersion !== undefined) {
            for (const op of history.get(d.id) ?? []) {
              if (op.version <= req.fromVersion) continue;
              handlers.onData({
                type: EventType.EVENT_TYPE_OPERATION_APPLIED,
                documentId: d.id,
                version: op.version,
                timestamp: op.timestamp,
                userId: op.authorId,
                payload: { $case: "operation", value: op },
              });
            }
          }
          const waiters = subscribedWaiters;
          subscribedWaiters = [];
          for (const waiter of waiters) waiter({ fromVersion: req.fromVersion });
          handlers.onData({
            type: EventType.EVENT_TYPE_SUBSCRIBED,
            documentId: d.id,
            version: d.version,
            timestamp: Date.now(),
            userId: req.actorId,
            payload: undefined,
          });
        });
        for (const waiter of calledWaiters) waiter(); // after the check above is queued
        return {
          cancel() {
            if (set.delete(handlers)) control.subscriptions--;
          },
        };
      },
      submitOperations(handlers) {
        seen("submitOperations");
        control.submitStreams++;
        let open = true;
        return {
          send(req) {
            if (!open) throw new AppError("UNAVAILABLE", "stream closed");
            queueMicrotask(() => {
              try {
                const applied = apply(req.apply!.actorId, req.apply!.operation!);
                handlers.onData({
                  requestId: req.requestId,
                  outcome: { $case: "applied", value: applied },
                });
              } catch (error) {
                const e = AppError.from(error);
                handlers.onData({
                  requestId: req.requestId,
                  outcome: { $case: "error", value: { code: e.code, message: e.message } },
                });
              }
            });
          },
          cancel() {
            if (open) control.submitStreams--;
            open = false;
          },
        };
      },
    },
    health() {
      return Promise.resolve({
        session: {
          status: "SERVING",
          required: true,
          transport: "in-process",
          address: "memory",
          latencyMs: 0,
        },
        statesync: {
          status: control.statesyncDown ? "UNREACHABLE" : "SERVING",
          required: true,
          transport: "in-process",
          address: "memory",
          latencyMs: 0,
        },
      });
    },
    close: () => Promise.resolve(),
  };
}

/** A backend target for createGrpcBackends: plain TCP, two retries, 2 s default deadline. */
export function tcpTarget(address: string) {
  return {
    address,
    transport: "tcp" as const,
    required: true,
    retries: 2,
    defaultTimeoutMs: 2_000,
  };
}

/**
 * An access token of user `id-<name>` for a new live session (the WebSocket hub checks that
 * the session exists), issued at `now`.
 */
export async function sessionToken(
  session: SessionBackend,
  tokens: TokenService,
  name = "alice",
  now = Date.now(),
): Promise<string> {
  const { session: created } = await session.createSession({
    userId: `id-${name}`,
    connectionId: "",
    clientIp: "",
    clientPort: 0,
    serverAddress: "",
    ttlSeconds: 60,
    metadata: {},
  });
  const claims = { sub: `id-${name}`, sid: created!.id, name, role: "user" };
  return (await tokens.issue(claims, now)).token;
}

/** A config for tests (overrides merged over defaults). */
export function testConfig(overrides: Record<string, unknown> = {}): GatewayConfig {
  return GatewayConfigSchema.parse(overrides);
}

/** A user store with `alice` (user) and `admin` (admin), password "password-123". */
export async function testUsers(): Promise<UserStore> {
  const users = new UserStore([]);
  await users.upsert("alice", "password-123", { role: "user", iterations: 1_000 });
  await users.upsert("bob", "password-123", { role: "user", iterations: 1_000 });
  await users.upsert("admin", "password-123", { role: "admin", iterations: 1_000 });
  return users;
}
