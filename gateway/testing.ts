/**
 * Test helpers for the gateway (not re-exported from mod.ts): a small WebSocket client with
 * queued JSON messages, awaiting a matching one, and the close event. Used by the gateway
 * and end-to-end tests.
 * @module
 */

/** A JSON message from the gateway. */
// deno-lint-ignore no-explicit-any
export type WsMessage = Record<string, any>;

/** A test client over a real WebSocket. */
export class WsTestClient implements AsyncDisposable {
  readonly socket: WebSocket;
  readonly opened: Promise<void>;
  readonly closed: Promise<CloseEvent>;
  #queue: WsMessage[] = [];
  #waiters: Array<{ match: (m: WsMessage) => boolean; resolve: (m: WsMessage) => void }> = [];
  #nextId = 1;

  /** @param autoPong answer server pings (default true) */
  constructor(url: string, readonly autoPong = true) {
    this.socket = new WebSocket(url);
    this.opened = new Promise((resolve, reject) => {
      this.socket.onopen = () => resolve();
      this.socket.onerror = (e) =>
        reject(new Error(`WebSocket error: ${(e as ErrorEvent).message}`));
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => this.socket.onclose = resolve);
    this.socket.onmessage = (event) => {
      const message = JSON.parse(event.data) as WsMessage;
      if (message.type === "ping" && this.autoPong) {
        this.socket.send(JSON.stringify({ type: "pong" }));
        return;
      }
      const index = this.#waiters.findIndex((w) => w.match(message));
      if (index >= 0) this.#waiters.splice(index, 1)[0]!.resolve(message);
      else this.#queue.push(message);
    };
  }

  /** Open a client and wait until the socket is open. */
  static async connect(url: string, autoPong = true): Promise<WsTestClient> {
    const client = new WsTestClient(url, autoPong);
    await client.opened;
    return client;
  }

  /** Send a message (an id is added when missing) and return its id. */
  send(message: WsMessage): string {
    const id = message.id ?? `m${this.#nextId++}`;
    this.socket.send(JSON.stringify({ ...message, id }));
    return id;
  }

  /** Send raw text. */
  sendRaw(text: string): void {
    this.socket.send(text);
  }

  /** The next message matching `match` (queued or future). */
  next(match: (m: WsMessage) => boolean = () => true): Promise<WsMessage> {
    const index = this.#queue.findIndex(match);
    if (index >= 0) return Promise.resolve(this.#queue.splice(index, 1)[0]!);
    return new Promise((resolve) => this.#waiters.push({ match, resolve }));
  }

  /** Send and wait for the reply/ack/error echoing the id. */
  async request(message: WsMessage): Promise<WsMessage> {
    const id = this.send(message);
    const closed = this.closed.then((event): never => {
      throw new Error(`Socket closed (${event.code} ${event.reason}) before the reply to ${id}`);
    });
    return await Promise.race([this.next((m) => m.id === id && m.type !== "event"), closed]);
  }

  /** Messages received and not yet consumed. */
  get pending(): WsMessage[] {
    return [...this.#queue];
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.socket.readyState === WebSocket.CONNECTING) await this.opened.catch(() => {});
    if (this.socket.readyState !== WebSocket.CLOSED) this.socket.close();
    await this.closed;
  }
}
