/**
 * A lean WebSocket client for load: requests resolved by id from a map (O(1) per message,
 * unlike the test client's queue scan), events handed to a callback, server pings
 * answered. Speaks the gateway protocol (gateway/PROTOCOL.md) and the raw baseline's
 * subset of it.
 *
 * @example
 * ```ts
 * const c = await LoadWsClient.connect("ws://127.0.0.1:8080/ws");
 * await c.request({ type: "auth", token });
 * c.onEvent = (m, at) => console.log(m.version, at);
 * c.close();
 * ```
 * @module
 */

/** A JSON message from the server. */
// deno-lint-ignore no-explicit-any
export type ServerMessage = Record<string, any>;

/** Thrown by {@link LoadWsClient.request} when the socket closes first. */
export class SocketClosedError extends Error {
  override name = "SocketClosedError";
  constructor(readonly code: number, readonly reason: string) {
    super(`Socket closed (${code} ${reason})`);
  }
}

/** A WebSocket client for load generation. */
export class LoadWsClient {
  readonly socket: WebSocket;
  /** Resolves with the close event. */
  readonly closed: Promise<CloseEvent>;
  /** Called for every `event` and `message` (with the receive time, performance.now()). */
  onEvent: (message: ServerMessage, receivedAt: number) => void = () => {};
  /** Called for `error` messages without a matching pending request (e.g. rate limited). */
  onUnmatchedError: (message: ServerMessage) => void = () => {};
  #pending = new Map<
    string,
    { resolve: (m: ServerMessage) => void; reject: (e: Error) => void }
  >();
  #nextId = 1;
  #closeEvent: CloseEvent | undefined;

  private constructor(url: string) {
    this.socket = new WebSocket(url);
    this.closed = new Promise((resolve) => {
      this.socket.onclose = (event) => {
        this.#closeEvent = event;
        const error = new SocketClosedError(event.code, event.reason);
        for (const pending of this.#pending.values()) pending.reject(error);
        this.#pending.clear();
        resolve(event);
      };
    });
    this.socket.onmessage = (event) => this.#onMessage(event.data);
  }

  /**
   * Open a socket and wait until it is open.
   * @throws {Error} when the connection fails
   */
  static async connect(url: string): Promise<LoadWsClient> {
    const client = new LoadWsClient(url);
    await new Promise<void>((resolve, reject) => {
      client.socket.onopen = () => resolve();
      client.socket.onerror = (e) =>
        reject(new Error(`WebSocket error: ${(e as ErrorEvent).message ?? "connect failed"}`));
    });
    client.socket.onerror = () => {};
    return client;
  }

  /** Whether the socket is open. */
  get open(): boolean {
    return this.socket.readyState === WebSocket.OPEN;
  }

  /** The close event, once closed. */
  get closeEvent(): CloseEvent | undefined {
    return this.#closeEvent;
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /**
   * Send a message with a fresh id and resolve with the reply, ack or error echoing it.
   * @throws {SocketClosedError} when the socket closes before the answer
   */
  request(message: Record<string, unknown>): Promise<ServerMessage> {
    const id = `r${this.#nextId++}`;
    return new Promise((resolve, reject) => {
      if (!this.open) {
        const e = this.#closeEvent;
        reject(new SocketClosedError(e?.code ?? 0, e?.reason ?? "not open"));
        return;
      }
      this.#pending.set(id, { resolve, reject });
      this.socket.send(JSON.stringify({ ...message, id }));
    });
  }

  /** Send without waiting for an answer (ignored if the socket is not open). */
  send(message: Record<string, unknown>): void {
    if (this.open) this.socket.send(JSON.stringify(message));
  }

  /** Close the socket and wait for the close event. */
  async close(code = 1000): Promise<CloseEvent> {
    if (
      this.socket.readyState === WebSocket.CONNECTING || this.socket.readyState === WebSocket.OPEN
    ) {
      this.socket.close(code);
    }
    return await this.closed;
  }

  #onMessage(data: unknown): void {
    const at = performance.now();
    if (typeof data !== "string") return;
    const message = JSON.parse(data) as ServerMessage;
    const type = message.type;
    if (type === "event" || type === "message") {
      this.onEvent(message, at);
      return;
    }
    if (type === "ping") {
      this.send({ type: "pong" });
      return;
    }
    const id = message.id;
    const pending = typeof id === "string" ? this.#pending.get(id) : undefined;
    if (pending !== undefined) {
      this.#pending.delete(id);
      pending.resolve(message);
    } else if (type === "error") {
      this.onUnmatchedError(message);
    }
  }
}
