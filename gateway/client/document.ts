/**
 * A live document on a client: the local content with optimistic local edits (client-side
 * OT, see {@linkcode OtState}), subscription with resume from the last seen version,
 * presence of others, locks, and typed events.
 *
 * @example
 * ```ts
 * const doc = await client.open(documentId);
 * doc.events.on("change", ({ source }) => render(doc.content, source));
 * doc.submit([{ path: ["text"], action: { type: "text_insert", offset: 0, text: "Hi" } }]);
 * ```
 * @module
 */
import type { Json, Op, Path } from "../../statesync/json0/mod.ts";
import { Emitter } from "./emitter.ts";
import { type Link, RequestError, TRANSIENT } from "./_link.ts";
import { OtState } from "./ot_state.ts";
import {
  type DocumentInfo,
  fromWireComponents,
  type LockInfo,
  type PresenceInfo,
  type ServerMessage,
  toWireComponents,
  type WireOperation,
} from "./types.ts";

/** Events of a {@linkcode DocHandle}. */
export interface DocEvents {
  /** The local content changed (local edit, or a remote op transformed into local view). */
  change: {
    op: Op;
    source: "local" | "remote";
    version: number;
    /** Session id of the remote op's author. */
    author?: string;
  };
  /** The server acknowledged one of our ops: `op` is what it applied at `version`. */
  ack: { version: number; clientOpId: string; op: Op };
  /** Subscribed (first time, or again after a reconnect) and caught up. */
  synced: { version: number; replayed: number; resumed: boolean };
  /** Local ops the server refused; the document was reloaded from the server. */
  rejected: { error: Error; dropped: Op };
  /** Presence of other sessions changed. */
  presence: { presence: ReadonlyMap<string, PresenceInfo> };
  /** A lock was acquired or released. */
  locks: { locks: ReadonlyMap<string, LockInfo> };
  /** Any document event from the server (joined/left, conflicts, document updates...). */
  event: ServerMessage;
  /** A failure that did not stop the document (e.g. a presence update failed). */
  error: { error: Error };
}

/** Presence TTL sent to the server; refreshed at half of it. */
const PRESENCE_TTL_MS = 30_000;

/** A subscribed document. Obtain one with `client.open(documentId)`. */
export class DocHandle {
  /** The document id. */
  readonly id: string;
  /** Typed events. */
  readonly events: Emitter<DocEvents> = new Emitter();
  #link: Link;
  #ot: OtState | undefined;
  #info: DocumentInfo | undefined;
  #phase: "idle" | "subscribing" | "live" | "closed" = "idle";
  #buffer: ServerMessage[] = [];
  #presence = new Map<string, PresenceInfo>();
  #locks = new Map<string, LockInfo>();
  #myPresence: Json | undefined;
  #presenceSent: Json | undefined;
  #presenceBusy = false;
  #presenceTimer: unknown;
  #retryTimer: unknown;
  #retries = 0;
  #loaded: { resolve: () => void; reject: (e: unknown) => void } | undefined;
  #loadedPromise: Promise<void> | undefined;
  #subscribeSeq = 0;
  /** Subscription (#subscribeSeq) during which the in-flight op was last sent. */
  #inflightEpoch = -1;

  /** @internal created by the client */
  constructor(id: string, link: Link) {
    this.id = id;
    this.#link = link;
  }

  /** The local view of the content (includes our not yet acknowledged edits). */
  get content(): Json {
    return this.#ot?.content ?? null;
  }

  /** Last server version incorporated. */
  get version(): number {
    return this.#ot?.version ?? 0;
  }

  /** Document metadata from the last (re)load. */
  get info(): DocumentInfo | undefined {
    return this.#info;
  }

  /** Components not yet acknowledged by the server (in flight + queued). */
  get queued(): number {
    return this.#ot?.unacknowledged ?? 0;
  }

  /**
   * Our edits the server has not acknowledged yet, in order (for mapping positions that
   * others report in server coordinates into the local view).
   */
  get localOp(): Op {
    return this.#ot?.unacknowledgedOp ?? [];
  }

  /** True while subscribed and caught up. */
  get live(): boolean {
    return this.#phase === "live";
  }

  /** Presence of other sessions, by session id. */
  get presence(): ReadonlyMap<string, PresenceInfo> {
    return this.#presence;
  }

  /** Locks on the document, by lock id. */
  get locks(): ReadonlyMap<string, LockInfo> {
    return this.#locks;
  }

  /**
   * Apply `op` locally now and send it when possible (queued while offline).
   * @throws {OpError} when the op does not apply to the local content
   * @throws {Error} before the document is loaded or after close
   */
  submit(op: Op): void {
    if (this.#ot === undefined || this.#phase === "closed") {
      throw new Error(`Cannot submit: document ${this.id} is not loaded`);
    }
    if (op.length === 0) return;
    this.#ot.submit(op);
    this.events.emit("change", { op, source: "local", version: this.#ot.version });
    this.#flush();
  }

  /**
   * Set my presence state (cursor, selection, name...); `null` clears it. Updates are
   * coalesced: one request in flight, the latest state wins.
   */
  setPresence(state: Json | null): void {
    this.#myPresence = state;
    this.#sendPresence();
  }

  /**
   * Acquire a lock on the document (or a path of it); pass `lockId` to renew one.
   * @throws {RequestError} e.g. FAILED_PRECONDITION / ALREADY_EXISTS when someone else holds it
   */
  async lock(options: { path?: Path; ttlMs?: number; lockId?: string } = {}): Promise<LockInfo> {
    const reply = await this.#link.request({
      type: "lock",
      document_id: this.id,
      path: options.path ?? [],
      ...(options.ttlMs === undefined ? {} : { ttl_ms: options.ttlMs }),
      ...(options.lockId === undefined ? {} : { lock_id: options.lockId }),
    });
    const lock = reply.data as LockInfo;
    this.#locks.set(lock.id, lock);
    this.events.emit("locks", { locks: this.#locks });
    return lock;
  }

  /** Release a lock. @throws {RequestError} */
  async unlock(lockId: string): Promise<void> {
    await this.#link.request({ type: "unlock", document_id: this.id, lock_id: lockId });
    if (this.#locks.delete(lockId)) this.events.emit("locks", { locks: this.#locks });
  }

  /** Unsubscribe and stop. */
  async close(): Promise<void> {
    if (this.#phase === "closed") return;
    const wasOnline = this.#link.online;
    this.#phase = "closed";
    this.#clearTimers();
    this.#link.forget(this.id);
    this.#loaded?.reject(new Error("Document closed"));
    if (wasOnline) {
      await this.#link.request({ type: "unsubscribe", document_id: this.id }).catch(() => {});
    }
  }

  // ---- called by the client ----

  /** @internal resolves when first loaded */
  whenLoaded(): Promise<void> {
    if (this.#ot !== undefined) return Promise.resolve();
    this.#loadedPromise ??= new Promise((resolve, reject) => {
      this.#loaded = { resolve, reject };
    });
    return this.#loadedPromise;
  }

  /** @internal the socket is authenticated: (re)subscribe */
  onOnline(): void {
    if (this.#phase === "closed") return;
    this.#subscribe(false);
  }

  /** @internal the socket went down */
  onOffline(): void {
    if (this.#phase === "closed") return;
    this.#phase = "idle";
    this.#buffer = [];
    this.#presenceBusy = false;
    this.#presenceSent = undefined;
    this.#clearTimers();
  }

  /** @internal a document event from the server */
  onEvent(message: ServerMessage): void {
    if (this.#phase === "subscribing") {
      this.#buffer.push(message);
      return;
    }
    if (this.#phase !== "live") return;
    this.#handleEvent(message);
  }

  // ---- internals ----

  #subscribe(fresh: boolean): void {
    this.#phase = "subscribing";
    this.#buffer = [];
    const seq = ++this.#subscribeSeq;
    const resume = !fresh && this.#ot !== undefined;
    const message: Record<string, unknown> = { type: "subscribe", document_id: this.id };
    if (resume) message.from_version = this.#ot!.version;
    this.#link.request(message).then(
      (reply) => {
        if (seq !== this.#subscribeSeq || this.#phase !== "subscribing") return;
        this.#onSubscribed(reply, resume);
      },
      (error: RequestError) => {
        if (seq !== this.#subscribeSeq || this.#phase === "closed") return;
        if (error.status === "DISCONNECTED") return; // resubscribes when back online
        if (resume && error.status === "OUT_OF_RANGE") {
          this.#subscribe(true); // our version is unknown to the server: reload
          return;
        }
        this.events.emit("error", { error });
        if (TRANSIENT.has(error.status)) {
          // e.g. statesync briefly unavailable: try again with backoff while we are online.
          const delay = this.#link.retryDelay(this.#retries++);
          this.#link.clearTimeout(this.#retryTimer);
          this.#retryTimer = this.#link.setTimeout(() => {
            this.#retryTimer = undefined;
            if (this.#phase === "subscribing" && seq === this.#subscribeSeq) {
              this.#subscribe(fresh || !resume);
            }
          }, delay);
          return;
        }
        this.#phase = "idle";
        this.#loaded?.reject(error);
        this.#loaded = undefined;
        this.#loadedPromise = undefined;
      },
    );
  }

  #onSubscribed(reply: ServerMessage, resumed: boolean): void {
    const data = reply.data as { version: number; replayed: number; document?: DocumentInfo };
    if (data.document !== undefined) {
      const doc = data.document;
      this.#info = doc;
      if (this.#ot === undefined) {
        this.#ot = new OtState({
          version: doc.version,
          content: doc.content,
          strategy: doc.conflict_strategy,
        });
      } else {
        const dropped = this.#ot.reset(doc.version, doc.content, doc.conflict_strategy);
        this.events.emit("change", { op: [], source: "remote", version: doc.version });
        if (this.#pendingRejection !== undefined || dropped.length > 0) {
          const error = this.#pendingRejection ??
            new Error("The document was reloaded from the server; local edits were dropped");
          this.events.emit("rejected", { error, dropped });
        }
      }
      this.#pendingRejection = undefined;
    }
    this.#phase = "live";
    const buffered = this.#buffer;
    this.#buffer = [];
    for (const event of buffered) {
      if (this.#phase !== "live") break;
      this.#handleEvent(event);
    }
    if (this.#phase !== "live") return;
    this.#retries = 0;
    this.events.emit("synced", { version: this.version, replayed: data.replayed ?? 0, resumed });
    this.#loaded?.resolve();
    this.#loaded = undefined;
    this.#flush();
    this.#sendPresence();
  }

  #pendingRejection: Error | undefined;

  #handleEvent(message: ServerMessage): void {
    const ot = this.#ot;
    if (ot === undefined) return;
    switch (message.event) {
      case "operation_applied": {
        const op = message.operation as WireOperation | null;
        if (op === null) break;
        const inflightOp = ot.inflight?.op ?? [];
        const received = ot.receive(
          message.version,
          fromWireComponents(op.components),
          op.client_op_id,
        );
        if (received.kind === "gap") {
          this.#subscribe(false); // resume from what we have
          return;
        }
        if (received.kind === "ack") {
          this.events.emit("ack", {
            version: received.version,
            clientOpId: op.client_op_id,
            op: inflightOp,
          });
          this.#flush();
        } else if (received.kind === "remote") {
          this.events.emit("change", {
            op: received.op,
            source: "remote",
            version: received.version,
            author: op.session_id,
          });
        }
        break;
      }
      case "presence_updated": {
        const presence = message.presence as PresenceInfo | undefined;
        if (presence === undefined || presence.session_id === this.#link.sessionId) break;
        if (presence.state === null) this.#presence.delete(presence.session_id);
        else this.#presence.set(presence.session_id, presence);
        this.events.emit("presence", { presence: this.#presence });
        break;
      }
      case "user_left": {
        let changed = false;
        for (const [session, presence] of this.#presence) {
          if (presence.user_id === message.user_id) changed = this.#presence.delete(session);
        }
        if (changed) this.events.emit("presence", { presence: this.#presence });
        break;
      }
      case "lock_acquired":
      case "lock_released": {
        const lock = message.lock as LockInfo | undefined;
        if (lock === undefined) break;
        if (message.event === "lock_acquired") this.#locks.set(lock.id, lock);
        else this.#locks.delete(lock.id);
        this.events.emit("locks", { locks: this.#locks });
        break;
      }
      case "resync_required":
        this.#subscribe(false);
        return;
      case "document_updated":
        if (message.document !== undefined) {
          this.#info = { ...(message.document as DocumentInfo) };
        }
        break;
    }
    this.events.emit("event", message);
  }

  /**
   * Send the next pending op when nothing is in flight; send the in-flight op again when it
   * was sent before the current subscription (a reconnect) or when `retry` is set.
   */
  #flush(retry = false): void {
    const ot = this.#ot;
    if (ot === undefined || this.#phase !== "live" || !this.#link.online) return;
    let next;
    if (ot.inflight !== null) {
      if (this.#inflightEpoch === this.#subscribeSeq && !retry) return;
      next = ot.resendable();
    } else {
      next = ot.takeSendable();
    }
    if (next === null) return;
    this.#inflightEpoch = this.#subscribeSeq;
    const clientOpId = next.clientOpId;
    this.#link.request({
      type: "op",
      document_id: this.id,
      base_version: next.baseVersion,
      client_op_id: clientOpId,
      components: toWireComponents(next.op),
    }).then(
      (reply) => {
        if (reply.held === true) {
          this.#reject(new RequestError("ABORTED", "Operation held as a conflict"));
          return;
        }
        const inflightOp = ot.inflight?.op ?? [];
        if (ot.ack(reply.version, clientOpId)) {
          this.events.emit("ack", { version: reply.version, clientOpId, op: inflightOp });
          this.#flush();
        }
      },
      (error: RequestError) => {
        if (this.#phase === "closed" || ot.inflight?.clientOpId !== clientOpId) return;
        if (error.status === "DISCONNECTED") return; // resent after the resubscribe
        if (TRANSIENT.has(error.status)) {
          const delay = this.#link.retryDelay(this.#retries++);
          this.#link.clearTimeout(this.#retryTimer);
          this.#retryTimer = this.#link.setTimeout(() => this.#flush(true), delay);
          return;
        }
        this.#reject(error);
      },
    );
  }

  /** The server refused our op: reload the document and drop local ops (ShareDB's hard rollback). */
  #reject(error: Error): void {
    this.#pendingRejection = error;
    this.#subscribe(true);
  }

  #sendPresence(): void {
    if (this.#phase !== "live" || !this.#link.online || this.#presenceBusy) return;
    const state = this.#myPresence;
    if (state === undefined) return;
    if (state === this.#presenceSent && this.#presenceTimer !== undefined) return;
    this.#presenceBusy = true;
    this.#presenceSent = state;
    this.#link.clearTimeout(this.#presenceTimer);
    this.#presenceTimer = undefined;
    const message: Record<string, unknown> = { type: "presence", document_id: this.id };
    if (state !== null) {
      message.state = state;
      message.ttl_ms = PRESENCE_TTL_MS;
    }
    this.#link.request(message).then(
      () => {
        this.#presenceBusy = false;
        if (this.#phase !== "live") return;
        if (state !== null) {
          this.#presenceTimer = this.#link.setTimeout(() => {
            this.#presenceTimer = undefined;
            this.#presenceSent = undefined;
            this.#sendPresence();
          }, PRESENCE_TTL_MS / 2);
        }
        if (this.#myPresence !== state) this.#sendPresence();
      },
      (error: RequestError) => {
        this.#presenceBusy = false;
        this.#presenceSent = undefined;
        if (error.status !== "DISCONNECTED") this.events.emit("error", { error });
      },
    );
  }

  #clearTimers(): void {
    this.#link.clearTimeout(this.#presenceTimer);
    this.#link.clearTimeout(this.#retryTimer);
    this.#presenceTimer = undefined;
    this.#retryTimer = undefined;
  }
}
