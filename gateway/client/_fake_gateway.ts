/**
 * Test helper: an in-memory stand-in for the gateway's WebSocket protocol (one text
 * document store with json0 transform on the server side, as statesync's merge strategy
 * does), with sockets whose traffic the test delivers step by step: client→server FIFO,
 * and server→client in two lanes (events in order, acks separately), so a test can put an
 * ack before or after remote ops, drop a connection mid-flight, or randomise everything.
 * @module
 */
import { apply, type Json, type Op, transform } from "../../statesync/json0/mod.ts";
import type { AccessToken, TokenProvider } from "./auth.ts";
import type { SocketLike } from "./client.ts";
import type { Clock } from "./clock.ts";
import { fromWireComponents, toWireComponents, type WireComponent } from "./types.ts";

interface ServerOp {
  version: number;
  op: Op;
  sessionId: string;
  clientOpId: string;
  authorId: string;
}

interface ServerDoc {
  id: string;
  content: Json;
  version: number;
  ops: ServerOp[];
  subscribers: Set<FakeConn>;
  locks: Map<string, { owner: string; session: string }>;
  strategy: string;
}

/** The server side of one fake socket. */
export class FakeConn {
  /** Client→server messages not yet delivered. */
  inbox: string[] = [];
  /** Server→client events (ordered). */
  events: string[] = [];
  /** Server→client replies and acks (ordered among themselves). */
  replies: string[] = [];
  opened = false;
  closed = false;
  user: { id: string; session: string } | undefined;
  constructor(readonly socket: FakeSocket) {}
}

/** The client side of one fake socket. */
export class FakeSocket implements SocketLike {
  readyState = 0;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  conn: FakeConn;
  constructor(readonly server: FakeGateway) {
    this.conn = new FakeConn(this);
  }
  send(data: string): void {
    if (this.readyState !== 1) throw new Error("Socket not open");
    this.conn.inbox.push(data);
  }
  close(code = 1000, reason = ""): void {
    if (this.readyState >= 2) return;
    this.readyState = 3;
    this.conn.closed = true;
    this.server.detach(this.conn);
    queueMicrotask(() => this.onclose?.({ code, reason }));
  }
}

/** Tokens `<name>.1`, `<name>.2`, ... each valid for `ttlMs`; make them with FakeGateway.tokens(). */
export class FakeTokens implements TokenProvider {
  issued: string[] = [];
  refreshes = 0;
  fail: Error | undefined;
  #current: AccessToken | undefined;
  constructor(
    readonly clock: Clock,
    readonly name: string,
    readonly ttlMs: number,
    readonly onIssue: (token: string, expiresAt: number) => void,
  ) {}
  getToken(): Promise<AccessToken> {
    const current = this.#current;
    if (current !== undefined && current.expiresAt - this.clock.now() > this.ttlMs / 10) {
      return Promise.resolve(current);
    }
    return this.refresh();
  }
  refresh(): Promise<AccessToken> {
    if (this.fail !== undefined) return Promise.reject(this.fail);
    this.refreshes++;
    const token = `${this.name}.${this.issued.length + 1}`;
    this.issued.push(token);
    this.#current = { token, expiresAt: this.clock.now() + this.ttlMs };
    this.onIssue(token, this.#current.expiresAt);
    return Promise.resolve(this.#current);
  }
}

/** Pick one of `n` choices. */
export type Chooser = (n: number) => number;

/** The fake gateway. */
export class FakeGateway {
  docs = new Map<string, ServerDoc>();
  conns: FakeConn[] = [];
  /** Tokens accepted, with their user, session and expiry. */
  tokens = new Map<string, { userId: string; sessionId: string; expiresAt: number }>();
  /** Messages the server received, parsed (for assertions). */
  received: Array<Record<string, unknown>> = [];
  /** Ops applied (not counting de-duplicated resends). */
  applied = 0;
  /** Resends recognised by client op id. */
  duplicates = 0;
  /** Reject op messages with this error status when set. */
  rejectOps: string | undefined;
  /** Fail this many subscribe requests with UNAVAILABLE. */
  failSubscribes = 0;

  constructor(readonly clock: Clock) {}

  /** A token provider for user `name` (session `s-<name>`), accepted by this server. */
  issuer(name: string, ttlMs = 300_000): FakeTokens {
    return new FakeTokens(this.clock, name, ttlMs, (token, expiresAt) => {
      this.tokens.set(token, { userId: name, sessionId: `s-${name}`, expiresAt });
    });
  }

  /** A socket factory for the client. */
  socketFactory = (_url: string): SocketLike => {
    const socket = new FakeSocket(this);
    this.conns.push(socket.conn);
    return socket;
  };

  /** Create a document. */
  createDocument(id: string, content: Json, strategy = "merge"): void {
    this.docs.set(id, {
      id,
      content,
      version: 0,
      ops: [],
      subscribers: new Set(),
      locks: new Map(),
      strategy,
    });
  }

  /** Server content of a document. */
  content(id: string): Json {
    return this.docs.get(id)!.content;
  }

  /** Server version of a document. */
  version(id: string): number {
    return this.docs.get(id)!.version;
  }

  /** Open connections. */
  get live(): FakeConn[] {
    return this.conns.filter((c) => !c.closed);
  }

  /** Abruptly drop a connection: undelivered traffic in both directions is lost. */
  drop(conn: FakeConn, code = 1006): void {
    if (conn.closed) return;
    conn.inbox = [];
    conn.events = [];
    conn.replies = [];
    conn.closed = true;
    conn.socket.readyState = 3;
    this.detach(conn);
    const socket = conn.socket;
    queueMicrotask(() => socket.onclose?.({ code, reason: "dropped" }));
  }

  /** Close a connection from the server side with a code (e.g. 4003 token expired). */
  closeWith(conn: FakeConn, code: number, reason: string): void {
    this.drop(conn, code);
    void reason;
  }

  /** @internal */
  detach(conn: FakeConn): void {
    conn.closed = true;
    for (const doc of this.docs.values()) doc.subscribers.delete(conn);
  }

  /** Deliver the head of one lane of `conn` (inbox: the server handles it). */
  deliver(conn: FakeConn, lane: "inbox" | "events" | "replies"): void {
    const message = conn[lane].shift();
    if (message === undefined) throw new RangeError(`Nothing in ${lane}`);
    if (lane === "inbox") this.#handle(conn, message);
    else conn.socket.onmessage?.({ data: message });
  }

  /** The deliverable steps right now. */
  steps(): Array<() => void> {
    const out: Array<() => void> = [];
    for (const conn of this.conns) {
      if (conn.closed) continue;
      if (!conn.opened) {
        out.push(() => {
          conn.opened = true;
          conn.socket.readyState = 1;
          conn.socket.onopen?.({});
        });
        continue;
      }
      if (conn.inbox.length > 0) out.push(() => this.#handle(conn, conn.inbox.shift()!));
      if (conn.events.length > 0) {
        out.push(() => conn.socket.onmessage?.({ data: conn.events.shift()! }));
      }
      if (conn.replies.length > 0) {
        out.push(() => conn.socket.onmessage?.({ data: conn.replies.shift()! }));
      }
    }
    return out;
  }

  /** Run steps (first available, or as `choose` picks) until nothing is left. */
  async run(choose: Chooser = () => 0, maxSteps = 100_000): Promise<number> {
    let n = 0;
    for (; n < maxSteps; n++) {
      await settle();
      const steps = this.steps();
      if (steps.length === 0) break;
      steps[choose(steps.length)]!();
    }
    await settle();
    return n;
  }

  #out(conn: FakeConn, lane: "events" | "replies", message: Record<string, unknown>): void {
    if (!conn.closed) conn[lane].push(JSON.stringify(message));
  }

  #error(conn: FakeConn, id: unknown, status: string, message: string): void {
    this.#out(conn, "replies", { type: "error", id, status, code: 0, message });
  }

  #handle(conn: FakeConn, raw: string): void {
    if (new TextEncoder().encode(raw).length > 65_536) return this.drop(conn, 1009);
    const m = JSON.parse(raw) as Record<string, unknown> & { id?: unknown; type: string };
    this.received.push(m);
    if (m.type === "auth" || m.type === "refresh") {
      const token = String(m.token);
      const user = this.tokens.get(token);
      if (user === undefined || user.expiresAt <= this.clock.now()) {
        if (conn.user === undefined) return this.drop(conn, 4001);
        return this.#error(conn, m.id, "UNAUTHENTICATED", "Token expired");
      }
      conn.user = { id: user.userId, session: user.sessionId };
      return this.#out(conn, "replies", {
        type: "reply",
        id: m.id,
        data: {
          user_id: user.userId,
          session_id: user.sessionId,
          expires_at: user.expiresAt,
          connection_id: "c",
        },
      });
    }
    if (conn.user === undefined) return this.drop(conn, 4001);
    const doc = this.docs.get(String(m.document_id));
    switch (m.type) {
      case "pong":
        return;
      case "subscribe": {
        if (doc === undefined) return this.#error(conn, m.id, "NOT_FOUND", "No such document");
        if (this.failSubscribes > 0) {
          this.failSubscribes--;
          return this.#error(conn, m.id, "UNAVAILABLE", "statesync unavailable");
        }
        doc.subscribers.add(conn);
        const from = m.from_version as number | undefined;
        let replayed = 0;
        if (from !== undefined) {
          if (from > doc.version) return this.#error(conn, m.id, "OUT_OF_RANGE", "Ahead");
          for (const op of doc.ops) {
            if (op.version <= from) continue;
            replayed++;
            this.#out(conn, "events", this.#opEvent(doc, op, true));
          }
        }
        return this.#out(conn, "events", {
          type: "reply",
          id: m.id,
          data: {
            document_id: doc.id,
            version: doc.version,
            replayed,
            document: from === undefined
              ? {
                id: doc.id,
                content: structuredClone(doc.content),
                version: doc.version,
                conflict_strategy: doc.strategy,
              }
              : undefined,
          },
        });
      }
      case "unsubscribe":
        doc?.subscribers.delete(conn);
        return this.#out(conn, "replies", { type: "reply", id: m.id, data: {} });
      case "op": {
        if (doc === undefined) return this.#error(conn, m.id, "NOT_FOUND", "No such document");
        if (this.rejectOps !== undefined) {
          return this.#error(conn, m.id, this.rejectOps, "Rejected by test");
        }
        const clientOpId = String(m.client_op_id ?? "");
        const known = doc.ops.find((o) =>
          o.clientOpId === clientOpId && o.sessionId === conn.user!.session
        );
        if (known !== undefined) {
          this.duplicates++;
          return this.#out(conn, "replies", {
            type: "ack",
            id: m.id,
            document_id: doc.id,
            version: known.version,
            duplicate: true,
            held: false,
          });
        }
        const base = m.base_version as number;
        if (base > doc.version) return this.#error(conn, m.id, "FAILED_PRECONDITION", "Ahead");
        for (const lock of doc.locks.values()) {
          if (lock.owner !== conn.user.id) {
            return this.#error(conn, m.id, "FAILED_PRECONDITION", "Document is locked");
          }
        }
        let op = fromWireComponents(m.components as WireComponent[]);
        for (const applied of doc.ops) {
          if (applied.version > base) op = transform(op, applied.op, "right");
        }
        doc.content = apply(doc.content, op);
        doc.version++;
        this.applied++;
        const record: ServerOp = {
          version: doc.version,
          op,
          sessionId: conn.user.session,
          clientOpId,
          authorId: conn.user.id,
        };
        doc.ops.push(record);
        for (const sub of doc.subscribers) this.#out(sub, "events", this.#opEvent(doc, record));
        return this.#out(conn, "replies", {
          type: "ack",
          id: m.id,
          document_id: doc.id,
          version: doc.version,
          duplicate: false,
          held: false,
        });
      }
      case "presence": {
        if (doc === undefined) return this.#error(conn, m.id, "NOT_FOUND", "No such document");
        const presence = {
          user_id: conn.user.id,
          session_id: conn.user.session,
          state: m.state ?? null,
          updated_at: this.clock.now(),
          expires_at: this.clock.now() + 30_000,
        };
        for (const sub of doc.subscribers) {
          this.#out(sub, "events", {
            type: "event",
            event: "presence_updated",
            document_id: doc.id,
            user_id: conn.user.id,
            presence,
          });
        }
        return this.#out(conn, "replies", { type: "reply", id: m.id, data: { ok: true } });
      }
      case "lock": {
        if (doc === undefined) return this.#error(conn, m.id, "NOT_FOUND", "No such document");
        for (const lock of doc.locks.values()) {
          if (lock.owner !== conn.user.id) {
            return this.#error(conn, m.id, "FAILED_PRECONDITION", "Locked by someone else");
          }
        }
        const id = `lock-${doc.locks.size + 1}`;
        doc.locks.set(id, { owner: conn.user.id, session: conn.user.session });
        const lock = { id, document_id: doc.id, path: [], owner_id: conn.user.id };
        for (const sub of doc.subscribers) {
          this.#out(sub, "events", {
            type: "event",
            event: "lock_acquired",
            document_id: doc.id,
            lock,
          });
        }
        return this.#out(conn, "replies", { type: "reply", id: m.id, data: lock });
      }
      case "unlock": {
        if (doc === undefined) return this.#error(conn, m.id, "NOT_FOUND", "No such document");
        doc.locks.delete(String(m.lock_id));
        const lock = { id: m.lock_id, document_id: doc.id, path: [], owner_id: conn.user.id };
        for (const sub of doc.subscribers) {
          this.#out(sub, "events", {
            type: "event",
            event: "lock_released",
            document_id: doc.id,
            lock,
          });
        }
        return this.#out(conn, "replies", { type: "reply", id: m.id, data: { released: true } });
      }
      default:
        return this.#error(conn, m.id, "INVALID_ARGUMENT", `Unknown type ${m.type}`);
    }
  }

  #opEvent(doc: ServerDoc, op: ServerOp, replay = false): Record<string, unknown> {
    return {
      type: "event",
      event: "operation_applied",
      document_id: doc.id,
      version: op.version,
      replay,
      operation: {
        id: `op-${op.version}`,
        document_id: doc.id,
        base_version: op.version - 1,
        version: op.version,
        author_id: op.authorId,
        session_id: op.sessionId,
        client_op_id: op.clientOpId,
        timestamp: 0,
        components: toWireComponents(op.op),
      },
    };
  }
}

/** Let pending promise callbacks run (no timers involved). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 30; i++) await Promise.resolve();
}

/** A small seeded PRNG (mulberry32) for reproducible randomised tests. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
