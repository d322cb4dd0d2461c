/**
 * The AetherFlow browser client: one WebSocket to the gateway (`/ws`), authenticated with an
 * access token from a {@linkcode TokenProvider} and refreshed on the open socket before it
 * expires; reconnects by itself with capped exponential backoff and full jitter; documents
 * opened through it resubscribe from their last seen version and resend what is
 * unacknowledged. Runs in browsers and in Deno; the socket, clock and randomness are
 * injectable so tests can drive it deterministically.
 *
 * @example
 * ```ts
 * import { AetherFlowClient, RestAuth } from "./mod.ts";
 * const auth = new RestAuth(location.origin);
 * await auth.login("dev", "dev");
 * const client = new AetherFlowClient({ url: "ws://localhost:8080/ws", auth });
 * client.connect();
 * const doc = await client.open(documentId);
 * ```
 * @module
 */
import { ApiError, type TokenProvider } from "./auth.ts";
import { backoffDelay } from "./backoff.ts";
import { type Clock, systemClock } from "./clock.ts";
import { DocHandle } from "./document.ts";
import { Emitter } from "./emitter.ts";
import { type Link, RequestError } from "./_link.ts";
import type { ServerMessage } from "./types.ts";

/** The subset of a browser WebSocket the client uses. */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/** Opens a socket to `url` (default: `new WebSocket(url)`). */
export type SocketFactory = (url: string) => SocketLike;

/** Network reachability as the platform reports it (browsers: navigator.onLine). */
export interface OnlineSource {
  isOnline(): boolean;
  /** Call `listener` on changes; returns an unsubscribe function. */
  subscribe(listener: (online: boolean) => void): () => void;
}

/** Connection states. */
export type ConnectionStatus =
  /** Not started yet (call connect()). */
  | "idle"
  /** First connection attempt in progress. */
  | "connecting"
  /** Authenticated on an open socket. */
  | "online"
  /** Connection lost; retrying with backoff. */
  | "reconnecting"
  /** The platform reports no network; waiting for it to come back. */
  | "offline"
  /** Closed by close(), or the session was revoked / sign-in failed. */
  | "closed";

/** Events of an {@linkcode AetherFlowClient}. */
export interface ClientEvents {
  /** Status changes; `delayMs` is the wait before the next attempt when reconnecting. */
  status: { status: ConnectionStatus; attempt: number; delayMs?: number };
  /** Authenticated (also after each reconnect and token refresh). */
  authenticated: { userId: string; sessionId: string; expiresAt: number };
  /** The socket closed (with the server's code and reason). */
  disconnected: { code: number; reason: string };
  /** A message on a subscribed channel. */
  message: { channel: string; from: string; data: unknown };
  /** A failure that did not stop the client (refresh failed, bad message...). */
  error: { error: Error };
}

/** Options for {@linkcode AetherFlowClient}. */
export interface ClientOptions {
  /** WebSocket URL of the gateway, e.g. `ws://localhost:8080/ws`. */
  url: string;
  auth: TokenProvider;
  socket?: SocketFactory;
  clock?: Clock;
  /** Uniform [0, 1) random source for jitter (default Math.random). */
  random?: () => number;
  /** Reconnect backoff: first ceiling and cap in ms (default 250 ms, 10 s). */
  backoff?: { baseMs: number; maxMs: number };
  /** Reject a request without a reply after this many ms (default 15 s). */
  requestTimeoutMs?: number;
  /** Refresh the access token this long before it expires (at most a third of its life; default 60 s). */
  refreshMarginMs?: number;
  /** Reconnect when nothing arrived for this long (the server pings; default 45 s). */
  idleTimeoutMs?: number;
  /** Give up on a socket that is not open and authenticated after this long (default 10 s). */
  connectTimeoutMs?: number;
  /** Network reachability (default: navigator.onLine and online/offline events when present). */
  online?: OnlineSource;
}

/** Close codes after which reconnecting cannot help. */
const FATAL_CLOSE = new Set([4004]);
/** Close codes that mean "get a new token first". */
const AUTH_CLOSE = new Set([4001, 4003]);

interface PendingRequest {
  resolve: (message: ServerMessage) => void;
  reject: (error: RequestError) => void;
  timer: unknown;
}

/** A client connection to an AetherFlow gateway. */
export class AetherFlowClient {
  /** Typed events. */
  readonly events: Emitter<ClientEvents> = new Emitter();
  #url: string;
  #auth: TokenProvider;
  #socketFactory: SocketFactory;
  #clock: Clock;
  #random: () => number;
  #backoff: { baseMs: number; maxMs: number };
  #requestTimeoutMs: number;
  #refreshMarginMs: number;
  #idleTimeoutMs: number;
  #connectTimeoutMs: number;
  #onlineSource: OnlineSource | undefined;
  #offOnline: (() => void) | undefined;
  #status: ConnectionStatus = "idle";
  #socket: SocketLike | undefined;
  #authed = false;
  #attempt = 0;
  #forceRefresh = false;
  #retryTimer: unknown;
  #refreshTimer: unknown;
  #idleTimer: unknown;
  #nextId = 1;
  #requests = new Map<string, PendingRequest>();
  #docs = new Map<string, DocHandle>();
  #channels = new Set<string>();
  #userId: string | undefined;
  #sessionId: string | undefined;
  #link: Link;

  constructor(options: ClientOptions) {
    this.#url = options.url;
    this.#auth = options.auth;
    this.#socketFactory = options.socket ??
      ((url) => new WebSocket(url) as unknown as SocketLike);
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#backoff = options.backoff ?? { baseMs: 250, maxMs: 10_000 };
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 15_000;
    this.#refreshMarginMs = options.refreshMarginMs ?? 60_000;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 45_000;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.#onlineSource = options.online ?? browserOnlineSource();
    const isOnline = () => this.#authed;
    const sessionId = () => this.#sessionId;
    this.#link = {
      request: (message) => this.#request(message),
      get online() {
        return isOnline();
      },
      get sessionId() {
        return sessionId();
      },
      retryDelay: (attempt) => this.#delay(attempt),
      setTimeout: (fn, ms) => this.#clock.setTimeout(fn, ms),
      clearTimeout: (handle) => this.#clock.clearTimeout(handle),
      forget: (documentId) => this.#docs.delete(documentId),
    };
  }

  /** Current connection status. */
  get status(): ConnectionStatus {
    return this.#status;
  }

  /** Our user id, once authenticated. */
  get userId(): string | undefined {
    return this.#userId;
  }

  /** Our session id, once authenticated. */
  get sessionId(): string | undefined {
    return this.#sessionId;
  }

  /** Local op components not yet acknowledged, over all open documents. */
  get queued(): number {
    let n = 0;
    for (const doc of this.#docs.values()) n += doc.queued;
    return n;
  }

  /** Start connecting (idempotent). Reconnects on its own until close(). */
  connect(): void {
    if (this.#status !== "idle") return;
    this.#offOnline = this.#onlineSource?.subscribe((online) => this.#onNetwork(online));
    this.#setStatus("connecting");
    this.#attemptConnect();
  }

  /**
   * Open (subscribe to) a document; resolves once its content is loaded. Works offline:
   * the promise waits for the connection.
   * @throws {RequestError} e.g. NOT_FOUND, PERMISSION_DENIED
   * @throws {Error} after close()
   */
  async open(documentId: string): Promise<DocHandle> {
    if (this.#status === "closed") throw new Error("Cannot open a document: the client is closed");
    let doc = this.#docs.get(documentId);
    if (doc === undefined) {
      doc = new DocHandle(documentId, this.#link);
      this.#docs.set(documentId, doc);
      const loaded = doc.whenLoaded();
      if (this.#authed) doc.onOnline();
      try {
        await loaded;
      } catch (error) {
        this.#docs.delete(documentId);
        throw error;
      }
      return doc;
    }
    await doc.whenLoaded();
    return doc;
  }

  /** Subscribe to a plain channel (messages arrive as `message` events). */
  async subscribeChannel(channel: string): Promise<void> {
    this.#channels.add(channel);
    if (this.#authed) await this.#request({ type: "subscribe", channel });
  }

  /** Publish to a channel; resolves with the number of deliveries. @throws {RequestError} */
  async publish(channel: string, data: unknown): Promise<number> {
    const reply = await this.#request({ type: "publish", channel, data });
    return (reply.data as { delivered: number }).delivered;
  }

  /** Close the connection and every document; no reconnects. */
  async close(): Promise<void> {
    if (this.#status === "closed") return;
    const docs = [...this.#docs.values()];
    await Promise.all(docs.map((doc) => doc.close()));
    this.#shutdown("closed");
  }

  /** Drop the current socket as if the network failed (it reconnects). For tests and demos. */
  dropConnection(): void {
    this.#socket?.close(4000, "Dropped by client");
    if (this.#socket !== undefined) this.#onClose(this.#socket, 4000, "Dropped by client");
  }

  // ---- connection ----

  #setStatus(status: ConnectionStatus, delayMs?: number): void {
    if (this.#status === status && delayMs === undefined) return;
    this.#status = status;
    this.events.emit("status", {
      status,
      attempt: this.#attempt,
      ...(delayMs === undefined ? {} : { delayMs }),
    });
  }

  #isClosed(): boolean {
    return this.#status === "closed";
  }

  #delay(attempt: number): number {
    return backoffDelay(attempt, { ...this.#backoff, random: this.#random });
  }

  async #attemptConnect(): Promise<void> {
    this.#retryTimer = undefined;
    if (this.#status === "closed") return;
    if (this.#onlineSource !== undefined && !this.#onlineSource.isOnline()) {
      this.#setStatus("offline");
      return;
    }
    let token: string;
    try {
      const access = this.#forceRefresh ? await this.#auth.refresh() : await this.#auth.getToken();
      this.#forceRefresh = false;
      token = access.token;
    } catch (error) {
      if (this.#isClosed()) return;
      if (error instanceof ApiError && error.status === 401) {
        this.events.emit("error", { error });
        this.#shutdown("closed");
        return;
      }
      this.events.emit("error", { error: asError(error) });
      this.#scheduleReconnect();
      return;
    }
    if (this.#isClosed() || this.#socket !== undefined) return;
    let socket: SocketLike;
    try {
      socket = this.#socketFactory(this.#url);
    } catch (error) {
      this.events.emit("error", { error: asError(error) });
      this.#scheduleReconnect();
      return;
    }
    this.#socket = socket;
    this.#touch(this.#connectTimeoutMs); // a socket that never opens or authenticates
    socket.onopen = () => {
      if (this.#socket !== socket) return;
      this.#request({ type: "auth", token }, socket).then(
        (reply) => this.#onAuthenticated(reply),
        () => {}, // the server closes the socket on a failed auth
      );
    };
    socket.onmessage = (event) => {
      if (this.#socket !== socket) return;
      this.#onMessage(event.data);
    };
    socket.onclose = (event) => this.#onClose(socket, event.code, event.reason);
    socket.onerror = () => {};
  }

  #onAuthenticated(reply: ServerMessage): void {
    const data = reply.data as { user_id: string; session_id: string; expires_at: number };
    this.#userId = data.user_id;
    this.#sessionId = data.session_id;
    const first = !this.#authed;
    this.#authed = true;
    this.#touch(); // from now on the idle timeout applies
    this.#scheduleRefresh(data.expires_at);
    this.events.emit("authenticated", {
      userId: data.user_id,
      sessionId: data.session_id,
      expiresAt: data.expires_at,
    });
    if (!first) return; // a refresh on the open socket
    this.#attempt = 0;
    this.#setStatus("online");
    for (const channel of this.#channels) {
      this.#request({ type: "subscribe", channel }).catch(() => {});
    }
    for (const doc of this.#docs.values()) doc.onOnline();
  }

  #scheduleRefresh(expiresAt: number): void {
    this.#clock.clearTimeout(this.#refreshTimer);
    const left = expiresAt - this.#clock.now();
    const lead = Math.min(this.#refreshMarginMs, left / 3);
    this.#refreshTimer = this.#clock.setTimeout(() => {
      this.#refreshTimer = undefined;
      this.#refreshOnSocket();
    }, Math.max(0, left - lead));
  }

  async #refreshOnSocket(): Promise<void> {
    const socket = this.#socket;
    if (socket === undefined || !this.#authed) return;
    try {
      const { token } = await this.#auth.refresh();
      if (this.#socket !== socket || !this.#authed) return;
      const reply = await this.#request({ type: "refresh", token });
      this.#onAuthenticated(reply);
    } catch (error) {
      this.events.emit("error", { error: asError(error) });
      if (error instanceof ApiError && error.status === 401) {
        this.#shutdown("closed");
        return;
      }
      // Try again shortly; if the token runs out the server closes with 4003 and we
      // reconnect with a fresh one.
      if (this.#socket === socket) {
        this.#refreshTimer = this.#clock.setTimeout(
          () => this.#refreshOnSocket(),
          1_000 + this.#delay(2),
        );
      }
    }
  }

  /** (Re)arm the dead-socket timer: `ms` without an incoming message closes the socket. */
  #touch(ms = this.#authed ? this.#idleTimeoutMs : this.#connectTimeoutMs): void {
    this.#clock.clearTimeout(this.#idleTimer);
    const socket = this.#socket;
    this.#idleTimer = this.#clock.setTimeout(() => {
      if (this.#socket !== socket || socket === undefined) return;
      socket.close(4000, "Connection timed out");
      this.#onClose(socket, 4000, "Connection timed out");
    }, ms);
  }

  #onMessage(raw: unknown): void {
    this.#touch();
    let message: ServerMessage;
    try {
      message = JSON.parse(String(raw)) as ServerMessage;
    } catch (error) {
      this.events.emit("error", { error: asError(error) });
      return;
    }
    switch (message.type) {
      case "ping":
        this.#sendRaw({ type: "pong" });
        return;
      case "reply":
      case "ack":
      case "error":
      case "pong": {
        const id = message.id;
        const pending = id === null || id === undefined
          ? undefined
          : this.#requests.get(String(id));
        if (pending === undefined) {
          if (message.type === "error") {
            this.events.emit("error", {
              error: new RequestError(String(message.status), String(message.message)),
            });
          }
          return;
        }
        this.#requests.delete(String(id));
        this.#clock.clearTimeout(pending.timer);
        if (message.type === "error") {
          pending.reject(new RequestError(String(message.status), String(message.message)));
        } else {
          pending.resolve(message);
        }
        return;
      }
      case "event": {
        const doc = this.#docs.get(String(message.document_id));
        doc?.onEvent(message);
        return;
      }
      case "message":
        this.events.emit("message", {
          channel: String(message.channel),
          from: String(message.from),
          data: message.data,
        });
        return;
    }
  }

  #sendRaw(message: Record<string, unknown>, socket = this.#socket): boolean {
    if (socket === undefined || socket.readyState !== 1) return false;
    try {
      socket.send(JSON.stringify(message));
      return true;
    } catch {
      return false;
    }
  }

  #request(message: Record<string, unknown>, socket = this.#socket): Promise<ServerMessage> {
    const authMessage = message.type === "auth";
    if (socket === undefined || (!authMessage && !this.#authed)) {
      return Promise.reject(new RequestError("DISCONNECTED", "Not connected"));
    }
    const id = `c${this.#nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => {
        this.#requests.delete(id);
        reject(new RequestError("TIMEOUT", `No reply to ${String(message.type)} in time`));
      }, this.#requestTimeoutMs);
      this.#requests.set(id, { resolve, reject, timer });
      if (!this.#sendRaw({ ...message, id }, socket)) {
        this.#requests.delete(id);
        this.#clock.clearTimeout(timer);
        reject(new RequestError("DISCONNECTED", "Not connected"));
      }
    });
  }

  #onClose(socket: SocketLike, code: number, reason: string): void {
    if (this.#socket !== socket) return;
    socket.onopen =
      socket.onmessage =
      socket.onclose =
      socket.onerror =
        null;
    this.#socket = undefined;
    this.#authed = false;
    this.#clock.clearTimeout(this.#refreshTimer);
    this.#clock.clearTimeout(this.#idleTimer);
    this.#refreshTimer = this.#idleTimer = undefined;
    this.#failRequests();
    for (const doc of this.#docs.values()) doc.onOffline();
    this.events.emit("disconnected", { code, reason });
    if (this.#status === "closed") return;
    if (FATAL_CLOSE.has(code)) {
      this.events.emit("error", { error: new RequestError("UNAUTHENTICATED", reason) });
      this.#shutdown("closed");
      return;
    }
    if (AUTH_CLOSE.has(code)) this.#forceRefresh = true;
    if (this.#onlineSource !== undefined && !this.#onlineSource.isOnline()) {
      this.#setStatus("offline");
      return;
    }
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#status === "closed" || this.#retryTimer !== undefined) return;
    const delay = this.#delay(this.#attempt);
    this.#attempt++;
    this.#setStatus("reconnecting", delay);
    this.#retryTimer = this.#clock.setTimeout(() => this.#attemptConnect(), delay);
  }

  #onNetwork(online: boolean): void {
    if (this.#status === "closed" || this.#status === "idle") return;
    if (!online) {
      // Browsers keep dead sockets around for a while; drop ours and queue edits locally.
      this.#clock.clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
      const socket = this.#socket;
      if (socket !== undefined) {
        socket.close(4000, "Network offline");
        this.#onClose(socket, 4000, "Network offline");
      }
      this.#setStatus("offline");
      return;
    }
    if (this.#socket === undefined) {
      this.#clock.clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
      this.#setStatus("reconnecting", 0);
      this.#attemptConnect();
    }
  }

  #failRequests(): void {
    const requests = [...this.#requests.values()];
    this.#requests.clear();
    for (const pending of requests) {
      this.#clock.clearTimeout(pending.timer);
      pending.reject(new RequestError("DISCONNECTED", "Connection lost"));
    }
  }

  #shutdown(status: "closed"): void {
    this.#setStatus(status);
    this.#offOnline?.();
    this.#offOnline = undefined;
    this.#clock.clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    const socket = this.#socket;
    if (socket !== undefined) {
      socket.close(1000, "Client closed");
      this.#onClose(socket, 1000, "Client closed");
    }
    for (const doc of this.#docs.values()) doc.onOffline();
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** navigator.onLine plus the window's online/offline events, when the platform has them. */
function browserOnlineSource(): OnlineSource | undefined {
  const g = globalThis as unknown as {
    navigator?: { onLine?: boolean };
    addEventListener?: (type: string, fn: () => void) => void;
    removeEventListener?: (type: string, fn: () => void) => void;
    document?: unknown;
  };
  if (g.document === undefined || typeof g.navigator?.onLine !== "boolean") return undefined;
  if (g.addEventListener === undefined || g.removeEventListener === undefined) return undefined;
  return {
    isOnline: () => g.navigator?.onLine !== false,
    subscribe(listener) {
      const on = () => listener(true);
      const off = () => listener(false);
      g.addEventListener!("online", on);
      g.addEventListener!("offline", off);
      return () => {
        g.removeEventListener!("online", on);
        g.removeEventListener!("offline", off);
      };
    },
  };
}
