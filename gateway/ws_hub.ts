/**
 * The WebSocket side of the gateway (protocol in PROTOCOL.md): authentication on the first
 * message, document subscriptions fanned out from ONE statesync subscription per document
 * per gateway (all of them sharing one SubscribeDocuments stream, see subscription_mux.ts),
 * resume from a version via history, document operations over ONE submit stream per gateway
 * (SubmitOperationBatches, see grpc_backends.ts; acked only after statesync's result),
 * channels with publish/notify, presence, locks, server pings, per-connection rate and size
 * limits and a bounded outgoing queue.
 * @module
 */
import {
  AppError,
  currentTraceparent,
  isId,
  type Logger,
  newId,
  silentLogger,
} from "../kernel/mod.ts";
import type { DocumentEvent, SubmitRequest, SubmitResult } from "../proto/gen/statesync.ts";
import { EventType } from "../proto/gen/statesync.ts";
import { SessionState } from "../proto/gen/session.ts";
import type { AuthUser } from "./_http.ts";
import {
  ComponentSchema,
  conflictToJson,
  documentToJson,
  eventToJson,
  lockToJson,
  operationToJson,
  PathSchema,
  toProtoComponent,
  toProtoPath,
} from "./_convert.ts";
import type { Backends, StreamHandle, SubmitStream } from "./backends.ts";
import type { GatewayConfig } from "./config.ts";
import { TokenBuckets } from "./rate_limit.ts";
import { traceWsOperation } from "./ws_tracing.ts";
import { fastOpMessage } from "./ws_op_message.ts";
import type { TokenService } from "./tokens.ts";
import { z } from "zod";

/** Close codes the gateway uses (documented in PROTOCOL.md). */
export const CloseCode = {
  /** Server shutting down. */
  GOING_AWAY: 1001,
  /** Message larger than the limit. */
  MESSAGE_TOO_BIG: 1009,
  /** First message was not a valid auth, or the token was rejected. */
  AUTH_FAILED: 4001,
  /** No auth message within the auth timeout. */
  AUTH_TIMEOUT: 4002,
  /** The access token expired and was not refreshed. */
  TOKEN_EXPIRED: 4003,
  /** The session was logged out or deleted. */
  SESSION_REVOKED: 4004,
  /** Too many messages over the rate limit. */
  RATE_LIMITED: 4008,
  /** The outgoing queue exceeded its limit (slow consumer). */
  SLOW_CONSUMER: 4009,
  /** No pong in time. */
  PONG_TIMEOUT: 4010,
} as const;

/** The socket surface the hub needs (a browser-style WebSocket satisfies it). */
export interface WsSocket {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
}

/** Options for {@link WsHub}. */
export interface WsHubOptions {
  backends: Backends;
  tokens: TokenService;
  config: GatewayConfig["ws"];
  logger?: Logger;
  /** Session ids logged out on this gateway. */
  revoked?: { has(sessionId: string): boolean };
}

/** Counters reported by /ws/stats. */
export interface WsStats {
  connections: number;
  authenticated: number;
  documents: number;
  channels: number;
  messagesIn: number;
  messagesOut: number;
  opsSubmitted: number;
  opsAcked: number;
  slowConsumersClosed: number;
  rateLimited: number;
  submitStreamOpen: boolean;
}

const MessageId = z.union([z.string().max(64), z.number()]).optional();
const Channel = z.string().regex(/^[A-Za-z0-9_:.\-/]{1,128}$/, "expected a channel name");
const DocId = z.string().refine(isId, "expected a UUIDv7");

/** Every message a client may send (exported for the fast-path test). */
export const ClientMessage = z.discriminatedUnion("type", [
  z.object({ type: z.literal("auth"), id: MessageId, token: z.string().min(1) }).strict(),
  z.object({ type: z.literal("refresh"), id: MessageId, token: z.string().min(1) }).strict(),
  z.object({ type: z.literal("ping"), id: MessageId }).strict(),
  z.object({ type: z.literal("pong"), id: MessageId }).strict(),
  z.object({
    type: z.literal("subscribe"),
    id: MessageId,
    document_id: DocId.optional(),
    channel: Channel.optional(),
    from_version: z.number().int().min(0).optional(),
  }).strict(),
  z.object({
    type: z.literal("unsubscribe"),
    id: MessageId,
    document_id: DocId.optional(),
    channel: Channel.optional(),
  }).strict(),
  z.object({ type: z.literal("publish"), id: MessageId, channel: Channel, data: z.unknown() })
    .strict(),
  z.object({ type: z.literal("notify"), id: MessageId, channel: Channel, data: z.unknown() })
    .strict(),
  z.object({
    type: z.literal("op"),
    id: MessageId,
    document_id: DocId,
    base_version: z.number().int().min(0),
    client_op_id: z.string().min(1).max(128).optional(),
    components: z.array(ComponentSchema).min(1).max(1000),
  }).strict(),
  z.object({
    type: z.literal("presence"),
    id: MessageId,
    document_id: DocId,
    state: z.unknown().optional(),
    ttl_ms: z.number().int().min(1).max(3_600_000).optional(),
  }).strict(),
  z.object({
    type: z.literal("lock"),
    id: MessageId,
    document_id: DocId,
    path: PathSchema.default([]),
    ttl_ms: z.number().int().min(1).max(3_600_000).optional(),
    lock_id: z.string().optional(),
  }).strict(),
  z.object({ type: z.literal("unlock"), id: MessageId, document_id: DocId, lock_id: z.string() })
    .strict(),
]);
/** A validated client message. */
export type ClientMessage = z.output<typeof ClientMessage>;

/** Max live events buffered for a member still catching up before it must resync. */
const MAX_PENDING_EVENTS = 10_000;
/** Consecutive rate-limited messages before the connection is closed. */
const RATE_LIMIT_CLOSE_AFTER = 50;

class Conn {
  readonly id = newId();
  user: AuthUser | undefined;
  docs = new Set<string>();
  channels = new Set<string>();
  closed = false;
  lastSeen = performance.now();
  awaitingPong = false;
  rateViolations = 0;
  /** Set while an auth message is being checked: later messages wait for it. */
  authPending: Promise<void> | undefined;
  timers: Array<ReturnType<typeof setTimeout>> = [];
  expiryTimer: ReturnType<typeof setTimeout> | undefined;
  /** Ops sent to statesync and not answered yet. */
  opsInFlight = 0;
  /** Traffic of this socket's session on this gateway (shared by its sockets). */
  traffic: SessionTraffic | undefined;
  constructor(readonly socket: WsSocket, readonly ip: string) {}
}

/** Traffic counters of one session on this gateway, reported to the session service. */
interface SessionTraffic {
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  operations: number;
  /** Open sockets of the session here. */
  sockets: number;
  dirty: boolean;
}

interface Member {
  conn: Conn;
  /** Highest operation version delivered to this member. */
  lastVersion: number;
  /** Live events held while the member's catch-up history is loading. */
  pending: DocumentEvent[] | null;
}

class DocFeed {
  members = new Map<Conn, Member>();
  stream: StreamHandle | undefined;
  ready: Promise<void>;
  readyResolve!: () => void;
  readyReject!: (error: unknown) => void;
  isReady = false;
  /** The stream was live at least once (later failures reconnect instead of failing). */
  wasLive = false;
  subscriberId = newId();
  retries = 0;
  retryTimer: ReturnType<typeof setTimeout> | undefined;
  constructor(readonly documentId: string, public actorId: string) {
    this.ready = this.#newReady();
  }
  #newReady(): Promise<void> {
    const ready = new Promise<void>((resolve, reject) => {
      this.readyResolve = resolve;
      this.readyReject = reject;
    });
    ready.catch(() => {}); // observed by waiters
    return ready;
  }
  resetReady(): void {
    this.isReady = false;
    this.ready = this.#newReady();
  }
}

/** The WebSocket hub (one per gateway). */
export class WsHub {
  #backends: Backends;
  #tokens: TokenService;
  #config: GatewayConfig["ws"];
  #log: Logger;
  #revoked: { has(sessionId: string): boolean };
  #conns = new Set<Conn>();
  #feeds = new Map<string, DocFeed>();
  #channels = new Map<string, Set<Conn>>();
  /** Per connection. */
  #rate: TokenBuckets;
  /** Per user, over all of the user's connections. */
  #userRate: TokenBuckets;
  #submit: SubmitStream | undefined;
  /** Keyed by request id as a number: small-integer keys are the cheapest Map keys. */
  #pendingOps = new Map<
    number,
    { resolve: (r: SubmitResult) => void; reject: (e: unknown) => void }
  >();
  /** Request ids on the submit stream only need to be unique within this hub. */
  #lastRequestId = 0;
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  #traffic = new Map<string, SessionTraffic>();
  #syncTimer: ReturnType<typeof setInterval> | undefined;
  #closing = false;
  #drained: (() => void) | undefined;
  #stats = {
    messagesIn: 0,
    messagesOut: 0,
    opsSubmitted: 0,
    opsAcked: 0,
    slowConsumersClosed: 0,
    rateLimited: 0,
  };

  constructor(options: WsHubOptions) {
    this.#backends = options.backends;
    this.#tokens = options.tokens;
    this.#config = options.config;
    this.#log = options.logger ?? silentLogger;
    this.#revoked = options.revoked ?? new Set();
    this.#rate = messageBuckets(options.config.messagesPerSecond);
    this.#userRate = messageBuckets(options.config.userMessagesPerSecond);
  }

  /** Take over an upgraded socket. */
  accept(socket: WsSocket, info: { ip: string; requestId?: string }): void {
    if (this.#closing) {
      socket.onopen = () => socket.close(CloseCode.GOING_AWAY, "Server shutting down");
      return;
    }
    const conn = new Conn(socket, info.ip);
    this.#conns.add(conn);
    this.#ensurePingLoop();
    conn.timers.push(setTimeout(() => {
      if (conn.user === undefined) this.#close(conn, CloseCode.AUTH_TIMEOUT, "Auth timeout");
    }, this.#config.authTimeoutMs));
    socket.onmessage = (event) => {
      this.#onMessage(conn, event.data).catch((error) => {
        this.#log.error("WebSocket handler failed", { error, conn_id: conn.id });
      });
    };
    socket.onclose = () => this.#cleanup(conn);
    socket.onerror = () => {};
  }

  /** Counters for /ws/stats. */
  stats(): WsStats {
    let authenticated = 0;
    for (const conn of this.#conns) if (conn.user) authenticated++;
    return {
      connections: this.#conns.size,
      authenticated,
      documents: this.#feeds.size,
      channels: this.#channels.size,
      ...this.#stats,
      submitStreamOpen: this.#submit !== undefined,
    };
  }

  /** Close every connection of a session (logout). */
  closeSession(sessionId: string): void {
    for (const conn of this.#conns) {
      if (conn.user?.sessionId === sessionId) {
        this.#close(conn, CloseCode.SESSION_REVOKED, "Session logged out");
      }
    }
  }

  /** Close all sockets and streams. */
  async close(options: { drainMs?: number } = {}): Promise<void> {
    this.#closing = true;
    // Let ops already sent to statesync get their result and their ack out first.
    if (this.#pendingOps.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.#drained = resolve),
        new Promise<void>((resolve) => timer = setTimeout(resolve, options.drainMs ?? 2_000)),
      ]);
      clearTimeout(timer);
      await new Promise<void>((resolve) => setTimeout(resolve, 0)); // acks are sent by now
    }
    for (const conn of [...this.#conns]) {
      this.#close(conn, CloseCode.GOING_AWAY, "Server shutting down");
    }
    for (const feed of this.#feeds.values()) {
      clearTimeout(feed.retryTimer);
      feed.stream?.cancel();
    }
    this.#feeds.clear();
    this.#submit?.cancel();
    this.#submit = undefined;
    for (const pending of this.#pendingOps.values()) {
      pending.reject(new AppError("UNAVAILABLE", "Gateway shutting down"));
    }
    this.#pendingOps.clear();
    clearInterval(this.#pingTimer);
    this.#pingTimer = undefined;
    clearInterval(this.#syncTimer);
    this.#syncTimer = undefined;
    await this.syncSessions(); // final counters
  }

  /**
   * Heartbeat the sessions with open sockets and report each session's counters (the timer
   * calls it every `ws.sessionSyncMs`). Failures are logged, never thrown.
   */
  async syncSessions(): Promise<void> {
    const calls: Promise<unknown>[] = [];
    for (const [sessionId, t] of this.#traffic) {
      if (t.sockets > 0 && !this.#closing) {
        calls.push(attempt(() => this.#backends.session.heartbeat({ sessionId, ttlSeconds: 0 })));
      }
      if (t.dirty) {
        t.dirty = false;
        calls.push(attempt(() =>
          this.#backends.session.updateSession({
            sessionId,
            updateMask: ["stats"],
            state: 0,
            metadata: {},
            stats: {
              messagesIn: t.messagesIn,
              messagesOut: t.messagesOut,
              bytesIn: t.bytesIn,
              bytesOut: t.bytesOut,
              operations: t.operations,
            },
            connectionId: "",
            serverAddress: "",
          })
        ));
      }
      if (t.sockets <= 0) this.#traffic.delete(sessionId);
    }
    const results = await Promise.allSettled(calls);
    const failed = results.filter((r) => r.status === "rejected").length;
    if (failed > 0) this.#log.warn("Session sync calls failed", { failed, total: calls.length });
  }

  #ensureSessionSync(): void {
    if (this.#syncTimer !== undefined || this.#config.sessionSyncMs <= 0) return;
    this.#syncTimer = setInterval(() => {
      if (this.#traffic.size === 0) {
        clearInterval(this.#syncTimer);
        this.#syncTimer = undefined;
        return;
      }
      void this.syncSessions();
    }, this.#config.sessionSyncMs);
  }

  // ---- connection plumbing ----

  #send(conn: Conn, message: Record<string, unknown>): void {
    if (conn.closed || conn.socket.readyState !== 1) return;
    this.#sendText(conn, JSON.stringify(message));
  }

  /** Send an already serialised message (an event shared by every member of a document). */
  #sendText(conn: Conn, data: string): void {
    if (conn.closed || conn.socket.readyState !== 1) return;
    if (conn.socket.bufferedAmount + data.length > this.#config.maxQueuedBytes) {
      this.#stats.slowConsumersClosed++;
      this.#close(conn, CloseCode.SLOW_CONSUMER, "Slow consumer: outgoing queue full");
      return;
    }
    this.#stats.messagesOut++;
    if (conn.traffic) {
      conn.traffic.messagesOut++;
      conn.traffic.bytesOut += data.length;
      conn.traffic.dirty = true;
    }
    conn.socket.send(data);
  }

  #reply(conn: Conn, id: unknown, data: unknown): void {
    this.#send(conn, { type: "reply", id: id ?? null, data });
  }

  #error(conn: Conn, id: unknown, error: unknown): void {
    const appError = AppError.from(error);
    if (appError.status === "INTERNAL") this.#log.error("WebSocket request failed", { error });
    this.#send(conn, {
      type: "error",
      id: id ?? null,
      code: appError.code,
      status: appError.status,
      message: appError.message,
    });
  }

  #close(conn: Conn, code: number, reason: string): void {
    if (conn.closed) return;
    try {
      conn.socket.close(code, reason);
    } catch { /* socket already gone */ }
    this.#cleanup(conn);
  }

  #cleanup(conn: Conn): void {
    if (conn.closed) return;
    conn.closed = true;
    this.#conns.delete(conn);
    this.#rate.delete(conn.id); // the user's bucket stays: it outlives reconnects
    if (conn.traffic) conn.traffic.sockets--;
    for (const timer of conn.timers) clearTimeout(timer);
    clearTimeout(conn.expiryTimer);
    for (const documentId of conn.docs) this.#leaveFeed(conn, documentId);
    for (const channel of conn.channels) this.#channels.get(channel)?.delete(conn);
    for (const channel of conn.channels) {
      if (this.#channels.get(channel)?.size === 0) this.#channels.delete(channel);
    }
    if (this.#conns.size === 0) {
      clearInterval(this.#pingTimer);
      this.#pingTimer = undefined;
    }
  }

  #ensurePingLoop(): void {
    if (this.#pingTimer !== undefined) return;
    this.#pingTimer = setInterval(() => {
      const now = performance.now();
      for (const conn of [...this.#conns]) {
        if (conn.socket.readyState !== 1) continue;
        if (conn.awaitingPong && now - conn.lastSeen > this.#config.pongTimeoutMs) {
          this.#close(conn, CloseCode.PONG_TIMEOUT, "No pong");
          continue;
        }
        if (now - conn.lastSeen >= this.#config.pingIntervalMs) {
          conn.awaitingPong = true;
          this.#send(conn, { type: "ping" });
        }
      }
    }, Math.max(10, Math.min(this.#config.pingIntervalMs, this.#config.pongTimeoutMs) / 2));
  }

  async #onMessage(conn: Conn, raw: unknown): Promise<void> {
    if (conn.closed) return;
    this.#stats.messagesIn++;
    conn.lastSeen = performance.now();
    conn.awaitingPong = false;
    const text = typeof raw === "string" ? raw : undefined;
    if (text === undefined) {
      this.#close(conn, 1003, "Text JSON messages only");
      return;
    }
    if (conn.traffic) {
      conn.traffic.messagesIn++;
      conn.traffic.bytesIn += text.length;
      conn.traffic.dirty = true;
    }
    // UTF-8 needs at most 3 bytes per UTF-16 unit: encode only a message that might be too big.
    if (
      text.length * 3 > this.#config.maxMessageBytes &&
      new TextEncoder().encode(text).length > this.#config.maxMessageBytes
    ) {
      this.#close(conn, CloseCode.MESSAGE_TOO_BIG, "Message too big");
      return;
    }
    const now = performance.now();
    if (
      !this.#rate.take(conn.id, now).allowed ||
      (conn.user !== undefined && !this.#userRate.take(conn.user.id, now).allowed)
    ) {
      this.#stats.rateLimited++;
      // One error per run of refused messages: answering each message of a flood would
      // double what the flood costs (and the error cannot name the request anyway).
      if (++conn.rateViolations >= RATE_LIMIT_CLOSE_AFTER) {
        this.#close(conn, CloseCode.RATE_LIMITED, "Rate limit exceeded");
      } else if (conn.rateViolations === 1) {
        this.#error(conn, null, new AppError("RESOURCE_EXHAUSTED", "Rate limit exceeded"));
      }
      return;
    }
    conn.rateViolations = 0;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      if (conn.user === undefined) this.#close(conn, CloseCode.AUTH_FAILED, "Expected auth");
      else this.#error(conn, null, new AppError("INVALID_ARGUMENT", "Malformed JSON message"));
      return;
    }
    // The hot `op` message has a hand-written check; zod judges everything else.
    const fast = fastOpMessage(json);
    const parsed = fast !== undefined
      ? { success: true as const, data: fast }
      : ClientMessage.safeParse(json);
    const id = (json as { id?: unknown } | null)?.id;
    if (!parsed.success) {
      if (conn.user === undefined) {
        this.#close(conn, CloseCode.AUTH_FAILED, "Expected auth");
        return;
      }
      const issue = parsed.error.issues[0]!;
      const field = issue.code === "unrecognized_keys"
        ? [...issue.path, issue.keys[0]].join(".")
        : issue.path.join(".");
      this.#error(
        conn,
        typeof id === "string" || typeof id === "number" ? id : null,
        new AppError("INVALID_ARGUMENT", `Invalid field "${field}": ${issue.message}`, {
          details: { field },
        }),
      );
      return;
    }
    const message = parsed.data;
    if (conn.authPending !== undefined && message.type !== "auth") {
      await conn.authPending; // clients may send right after auth without waiting for the reply
      if (conn.closed) return;
    }
    if (conn.user === undefined && message.type !== "auth") {
      this.#close(conn, CloseCode.AUTH_FAILED, "First message must be auth");
      return;
    }
    try {
      await traceWsOperation(message.type, () => this.#dispatch(conn, message));
    } catch (error) {
      this.#error(conn, message.id, error);
    }
  }

  async #dispatch(conn: Conn, message: ClientMessage): Promise<void> {
    switch (message.type) {
      case "auth": {
        const pending = this.#auth(conn, message.type, message.id, message.token);
        conn.authPending = pending.catch(() => {});
        try {
          return await pending;
        } finally {
          conn.authPending = undefined;
        }
      }
      case "refresh":
        return await this.#auth(conn, message.type, message.id, message.token);
      case "ping":
        return this.#send(conn, { type: "pong", id: message.id ?? null });
      case "pong":
        return;
      case "subscribe":
        if (message.document_id !== undefined) {
          return await this.#subscribeDocument(
            conn,
            message.id,
            message.document_id,
            message.from_version,
          );
        }
        if (message.channel !== undefined) {
          return this.#subscribeChannel(conn, message.id, message.channel);
        }
        throw new AppError("INVALID_ARGUMENT", "subscribe needs document_id or channel");
      case "unsubscribe":
        if (message.document_id !== undefined) {
          this.#leaveFeed(conn, message.document_id);
          return this.#reply(conn, message.id, { document_id: message.document_id });
        }
        if (message.channel !== undefined) {
          this.#channels.get(message.channel)?.delete(conn);
          conn.channels.delete(message.channel);
          return this.#reply(conn, message.id, { channel: message.channel });
        }
        throw new AppError("INVALID_ARGUMENT", "unsubscribe needs document_id or channel");
      case "publish":
      case "notify": {
        const members = this.#channels.get(message.channel) ?? new Set<Conn>();
        let delivered = 0;
        for (const member of members) {
          if (message.type === "notify" && member === conn) continue;
          this.#send(member, {
            type: "message",
            channel: message.channel,
            from: conn.user!.id,
            data: message.data ?? null,
          });
          delivered++;
        }
        return this.#reply(conn, message.id, { delivered });
      }
      case "op":
        return await this.#submitOp(conn, message);
      case "presence": {
        const user = conn.user!;
        await this.#backends.statesync.updatePresence({
          actorId: user.id,
          documentId: message.document_id,
          sessionId: user.sessionId || conn.id,
          stateJson: message.state === undefined ? "" : JSON.stringify(message.state),
          ttlMs: message.ttl_ms ?? 0,
        });
        return this.#reply(conn, message.id, { ok: true });
      }
      case "lock": {
        const user = conn.user!;
        const lock = await this.#backends.statesync.acquireLock({
          actorId: user.id,
          documentId: message.document_id,
          path: toProtoPath(message.path),
          sessionId: user.sessionId || conn.id,
          ttlMs: message.ttl_ms ?? 0,
          lockId: message.lock_id ?? "",
          waitMs: 0,
        });
        return this.#reply(conn, message.id, lockToJson(lock));
      }
      case "unlock": {
        await this.#backends.statesync.releaseLock({
          actorId: conn.user!.id,
          documentId: message.document_id,
          lockId: message.lock_id,
        });
        return this.#reply(conn, message.id, { released: true });
      }
    }
  }

  async #auth(conn: Conn, kind: "auth" | "refresh", id: unknown, token: string): Promise<void> {
    let user: AuthUser;
    try {
      user = await this.#tokens.verify(token);
      if (user.sessionId && this.#revoked.has(user.sessionId)) {
        throw new AppError("UNAUTHENTICATED", "Session logged out");
      }
      await this.#checkSession(user);
    } catch (error) {
      if (conn.user === undefined) {
        this.#close(conn, CloseCode.AUTH_FAILED, AppError.from(error).message.slice(0, 100));
      } else {
        this.#error(conn, id, error);
      }
      return;
    }
    if (kind === "auth" && conn.user !== undefined) {
      throw new AppError("FAILED_PRECONDITION", "Already authenticated; use refresh");
    }
    if (kind === "refresh" && conn.user !== undefined && conn.user.id !== user.id) {
      throw new AppError("PERMISSION_DENIED", "Refresh token belongs to another user");
    }
    conn.user = user;
    if (conn.traffic === undefined && user.sessionId) {
      let traffic = this.#traffic.get(user.sessionId);
      if (traffic === undefined) {
        traffic = {
          messagesIn: 0,
          messagesOut: 0,
          bytesIn: 0,
          bytesOut: 0,
          operations: 0,
          sockets: 0,
          dirty: true,
        };
        this.#traffic.set(user.sessionId, traffic);
      }
      traffic.sockets++;
      conn.traffic = traffic;
      this.#ensureSessionSync();
    }
    clearTimeout(conn.expiryTimer);
    conn.expiryTimer = setTimeout(() => {
      this.#close(conn, CloseCode.TOKEN_EXPIRED, "Token expired");
    }, Math.max(0, user.expiresAt - Date.now()));
    this.#reply(conn, id, {
      user_id: user.id,
      username: user.username,
      session_id: user.sessionId,
      expires_at: user.expiresAt,
      connection_id: conn.id,
    });
  }

  /**
   * A long-lived socket must not outlive its session: refuse tokens of sessions that were
   * deleted, expired or terminated (e.g. by refresh-token reuse). When the session service
   * is unreachable the token alone decides (availability over strictness).
   */
  async #checkSession(user: AuthUser): Promise<void> {
    if (!user.sessionId) return;
    try {
      const session = await this.#backends.session.getSession({
        selector: { $case: "sessionId", value: user.sessionId },
      });
      if (
        session.state === SessionState.SESSION_STATE_EXPIRED ||
        session.state === SessionState.SESSION_STATE_TERMINATED
      ) {
        throw new AppError("UNAUTHENTICATED", "Session ended");
      }
    } catch (error) {
      const appError = AppError.from(error);
      if (appError.status === "NOT_FOUND" || appError.status === "FAILED_PRECONDITION") {
        throw new AppError("UNAUTHENTICATED", "Session ended", { cause: error });
      }
      if (appError.status === "UNAUTHENTICATED") throw appError;
      this.#log.warn("Session check skipped", { error: appError.message });
    }
  }

  #checkSubscriptionLimit(conn: Conn): void {
    if (conn.docs.size + conn.channels.size >= this.#config.maxSubscriptions) {
      throw new AppError(
        "RESOURCE_EXHAUSTED",
        `At most ${this.#config.maxSubscriptions} subscriptions per connection`,
      );
    }
  }

  #subscribeChannel(conn: Conn, id: unknown, channel: string): void {
    if (!conn.channels.has(channel)) this.#checkSubscriptionLimit(conn);
    let members = this.#channels.get(channel);
    if (members === undefined) {
      members = new Set();
      this.#channels.set(channel, members);
    }
    members.add(conn);
    conn.channels.add(channel);
    this.#reply(conn, id, { channel });
  }

  // ---- documents ----

  async #subscribeDocument(
    conn: Conn,
    id: unknown,
    documentId: string,
    fromVersion: number | undefined,
  ): Promise<void> {
    const user = conn.user!;
    if (conn.docs.has(documentId)) this.#leaveFeed(conn, documentId);
    else this.#checkSubscriptionLimit(conn);
    let feed = this.#feeds.get(documentId);
    if (feed === undefined) {
      feed = new DocFeed(documentId, user.id);
      this.#feeds.set(documentId, feed);
      this.#openFeed(feed, undefined);
    }
    const member: Member = { conn, lastVersion: fromVersion ?? 0, pending: [] };
    feed.members.set(conn, member);
    conn.docs.add(documentId);
    try {
      await feed.ready; // the shared stream is live: nothing after this point can be missed
      // Permission check and current version for this user.
      const doc = await this.#backends.statesync.getDocument({
        actorId: user.id,
        documentId,
        atVersion: 0,
      });
      let replayed = 0;
      if (fromVersion !== undefined && fromVersion < doc.version) {
        let pageToken = "";
        do {
          const page = await this.#backends.statesync.getOperationHistory({
            actorId: user.id,
            documentId,
            fromVersion,
            toVersion: 0,
            pageSize: 1000,
            pageToken,
          });
          for (const op of page.operations) {
            if (op.version <= member.lastVersion) continue;
            member.lastVersion = op.version;
            replayed++;
            this.#send(conn, {
              type: "event",
              event: "operation_applied",
              document_id: documentId,
              version: op.version,
              operation: operationToJson(op),
              replay: true,
            });
          }
          pageToken = page.nextPageToken;
        } while (pageToken !== "" && !conn.closed);
      } else if (fromVersion === undefined) {
        member.lastVersion = doc.version;
      } else if (fromVersion > doc.version) {
        throw new AppError(
          "OUT_OF_RANGE",
          `from_version ${fromVersion} is ahead of ${doc.version}`,
        );
      }
      // The reply first (the client's starting point), then the live events that arrived
      // meanwhile; all synchronous, so nothing can slip in between.
      const pending = member.pending ?? [];
      member.pending = null;
      this.#reply(conn, id, {
        document_id: documentId,
        version: member.lastVersion,
        replayed,
        document: fromVersion === undefined ? documentToJson(doc) : undefined,
      });
      for (const event of pending) this.#deliver(feed, member, event);
    } catch (error) {
      this.#leaveFeed(conn, documentId);
      throw error;
    }
  }

  #openFeed(feed: DocFeed, fromVersion: number | undefined): void {
    feed.stream = this.#backends.statesync.subscribeDocument({
      actorId: feed.actorId,
      documentId: feed.documentId,
      sessionId: "",
      subscriberId: feed.subscriberId,
      fromVersion,
    }, {
      onData: (event) => {
        if (event.type === EventType.EVENT_TYPE_SUBSCRIBED) {
          feed.isReady = true;
          feed.wasLive = true;
          feed.retries = 0;
          feed.readyResolve();
          return;
        }
        const shared = new SharedEvent(event);
        for (const member of feed.members.values()) this.#deliver(feed, member, event, shared);
      },
      onError: (error) => this.#feedDown(feed, error),
      onEnd: () => this.#feedDown(feed, new AppError("UNAVAILABLE", "Subscription ended")),
    });
  }

  #feedDown(feed: DocFeed, error: unknown): void {
    if (this.#feeds.get(feed.documentId) !== feed) return;
    feed.stream = undefined;
    if (!feed.wasLive) {
      // Never got live: fail the waiting subscribers.
      this.#feeds.delete(feed.documentId);
      feed.readyReject(error);
      return;
    }
    const appError = AppError.from(error);
    if (appError.status === "NOT_FOUND" || appError.status === "PERMISSION_DENIED") {
      // Deleted: everyone is out. Access revoked: the stream's actor is out; the others
      // keep the feed with one of them as the actor.
      for (const member of [...feed.members.values()]) {
        const user = member.conn.user;
        if (appError.status === "PERMISSION_DENIED" && user?.id !== feed.actorId) continue;
        this.#send(member.conn, {
          type: "event",
          event: "subscription_ended",
          document_id: feed.documentId,
          code: appError.code,
          status: appError.status,
          message: appError.message,
        });
        feed.members.delete(member.conn);
        member.conn.docs.delete(feed.documentId);
      }
      const next = feed.members.keys().next().value;
      if (next?.user) feed.actorId = next.user.id;
    }
    if (feed.members.size === 0) {
      this.#feeds.delete(feed.documentId);
      return;
    }
    // Reconnect from the oldest version any member has, so nobody misses an op. Keep one
    // pending `ready` across failed attempts: subscribers joining meanwhile wait on it.
    if (feed.isReady) feed.resetReady();
    const delay = Math.min(2_000, 50 * 2 ** feed.retries++) * (0.5 + Math.random() / 2);
    this.#log.warn("Document subscription lost, reconnecting", {
      document_id: feed.documentId,
      error: appError.message,
      delay_ms: Math.round(delay),
    });
    feed.retryTimer = setTimeout(() => {
      if (this.#closing || this.#feeds.get(feed.documentId) !== feed) return;
      let from = Infinity;
      for (const member of feed.members.values()) from = Math.min(from, member.lastVersion);
      this.#openFeed(feed, Number.isFinite(from) ? from : undefined);
    }, delay);
  }

  #deliver(feed: DocFeed, member: Member, event: DocumentEvent, shared?: SharedEvent): void {
    if (member.pending !== null) {
      if (member.pending.length >= MAX_PENDING_EVENTS) {
        this.#send(member.conn, {
          type: "event",
          event: "resync_required",
          document_id: feed.documentId,
          reason: "Too many events while catching up",
        });
        this.#leaveFeed(member.conn, feed.documentId);
        return;
      }
      member.pending.push(event);
      return;
    }
    if (event.type === EventType.EVENT_TYPE_OPERATION_APPLIED) {
      if (event.version <= member.lastVersion) return; // already delivered (replay/reconnect)
      member.lastVersion = event.version;
    }
    this.#sendText(member.conn, (shared ?? new SharedEvent(event)).text);
  }

  #leaveFeed(conn: Conn, documentId: string): void {
    conn.docs.delete(documentId);
    const feed = this.#feeds.get(documentId);
    if (feed === undefined || !feed.members.delete(conn) || feed.members.size > 0) return;
    this.#feeds.delete(documentId);
    clearTimeout(feed.retryTimer);
    feed.stream?.cancel();
    this.#backends.statesync.unsubscribeDocument({
      actorId: feed.actorId,
      documentId,
      subscriberId: feed.subscriberId,
    }).catch(() => {}); // best effort: the cancelled stream already ends the subscription
  }

  // ---- operations ----

  #submitStream(): SubmitStream {
    if (this.#submit !== undefined) return this.#submit;
    const fail = (error: unknown) => {
      this.#submit = undefined;
      for (const pending of this.#pendingOps.values()) pending.reject(error);
      this.#pendingOps.clear();
    };
    this.#submit = this.#backends.statesync.submitOperations({
      onData: (result) => {
        const requestId = Number(result.requestId);
        const pending = this.#pendingOps.get(requestId);
        if (pending === undefined) return;
        this.#pendingOps.delete(requestId);
        pending.resolve(result);
        if (this.#pendingOps.size === 0) this.#drained?.();
      },
      onError: fail,
      onEnd: () => fail(new AppError("UNAVAILABLE", "Operation stream ended")),
    });
    return this.#submit;
  }

  async #submitOp(conn: Conn, message: Extract<ClientMessage, { type: "op" }>): Promise<void> {
    const user = conn.user!;
    if (this.#closing) throw new AppError("UNAVAILABLE", "Gateway shutting down: resend later");
    if (conn.opsInFlight >= this.#config.maxOpsInFlight) {
      throw new AppError(
        "RESOURCE_EXHAUSTED",
        `At most ${this.#config.maxOpsInFlight} operations in flight per connection`,
      );
    }
    const requestId = ++this.#lastRequestId;
    const request: SubmitRequest = {
      requestId: String(requestId),
      traceparent: currentTraceparent(),
      apply: {
        actorId: user.id,
        operation: {
          id: "",
          documentId: message.document_id,
          baseVersion: message.base_version,
          version: 0,
          authorId: user.id,
          sessionId: user.sessionId || conn.id,
          clientOpId: message.client_op_id ?? newId(),
          timestamp: 0,
          components: message.components.map(toProtoComponent),
        },
      },
    };
    conn.opsInFlight++;
    let result: SubmitResult;
    try {
      result = await new Promise<SubmitResult>((resolve, reject) => {
        this.#pendingOps.set(requestId, { resolve, reject });
        this.#stats.opsSubmitted++;
        try {
          this.#submitStream().send(request);
        } catch (error) {
          this.#pendingOps.delete(requestId);
          reject(AppError.from(error));
        }
      });
    } finally {
      conn.opsInFlight--;
    }
    const outcome = result.outcome;
    if (outcome?.$case === "error") {
      throw new AppError(AppError.statusName(outcome.value.code), outcome.value.message);
    }
    if (outcome?.$case !== "applied") throw new AppError("INTERNAL", "Empty submit result");
    this.#stats.opsAcked++;
    if (conn.traffic) conn.traffic.operations++;
    const applied = outcome.value;
    // The op also reaches every subscriber (the author too) as an operation_applied event.
    this.#send(conn, {
      type: "ack",
      id: message.id ?? null,
      document_id: message.document_id,
      version: applied.version,
      duplicate: applied.duplicate,
      held: applied.held,
      operation: operationToJson(applied.operation),
      conflicts: applied.conflicts.map(conflictToJson),
    });
  }
}

/** Message budgets of `perSecond` on average, with bursts of twice that. */
function messageBuckets(perSecond: number): TokenBuckets {
  return new TokenBuckets({
    capacity: Math.max(1, Math.ceil(perSecond * 2)),
    refillPerSecond: perSecond,
  });
}

/** A document event serialised once, on first use, for every member of the feed. */
class SharedEvent {
  #text: string | undefined;
  constructor(readonly event: DocumentEvent) {}
  get text(): string {
    return this.#text ??= JSON.stringify({ type: "event", ...eventToJson(this.event) });
  }
}

/** Run `call`, turning a synchronous throw into a rejection. */
function attempt<T>(call: () => Promise<T>): Promise<T> {
  try {
    return call();
  } catch (error) {
    return Promise.reject(error);
  }
}
