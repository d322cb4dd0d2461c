/**
 * The event hub: per-document subscriber sets fed by the document engine, the lock table
 * and presence. Every subscriber has a bounded queue (events and bytes); one that falls
 * too far behind is disconnected with RESOURCE_EXHAUSTED instead of growing memory.
 *
 * Resuming works as in ShareDB: the live subscription is registered first (buffering),
 * then the operations since `fromVersion` are read from history and delivered, then a
 * `subscribed` event, then the buffered live events — operations only with a version above
 * the last one delivered — so there is no gap and no duplicate. When the history is gone
 * or the gap is too large, the subscriber gets `resync_required` (reload the document).
 *
 * @example
 * ```ts
 * const hub = new EventHub({ maxQueueEvents: 1024 });
 * const sub = hub.subscribe(documentId, { userId: "alice" }); // buffering from here
 * const doc = await docs.assertCanRead("alice", documentId);
 * sub.resume({ currentVersion: doc.version, fromVersion: 10, history });
 * for await (const event of sub) send(event);
 * ```
 * @module
 */
import { AppError, type Clock, newId, systemClock } from "../kernel/mod.ts";
import type { EventSink, OperationRecord } from "./model.ts";
import type { DocEvent } from "./events.ts";

/** Options for {@link EventHub}. */
export interface EventHubOptions {
  /** Most events queued per subscriber before it is disconnected (default 1024). */
  maxQueueEvents?: number;
  /** Most bytes (estimated JSON size) queued per subscriber (default 1 MiB). */
  maxQueueBytes?: number;
  /** Most operations a resuming subscriber is caught up with; more → resync (default 10,000). */
  maxCatchUp?: number;
  /** Most subscribers per document (default 10,000). */
  maxSubscribersPerDocument?: number;
  /** Epoch-ms clock for event timestamps (default: wall clock). */
  clock?: Clock;
}

/** One page of operation history, as `DocumentManager.history()` returns it. */
export interface HistoryPage {
  operations: OperationRecord[];
  nextPageToken: string;
  /** True when operations after `fromVersion` are no longer kept. */
  historyGone?: boolean;
}

/** Reads operations with version > `fromVersion`, page by page. */
export type HistorySource = (fromVersion: number, pageToken: string) => Promise<HistoryPage>;

/** Options for {@link EventHub.subscribe}. */
export interface SubscribeOptions {
  /** Caller-chosen id (default: a new UUIDv7); reusing one replaces the older subscription. */
  subscriberId?: string;
  userId?: string;
  sessionId?: string;
}

/** Options for {@link Subscription.resume}. */
export interface ResumeOptions {
  /** The document version read after the subscription was registered. */
  currentVersion: number;
  /** Deliver every operation with a version above this first; omitted = live only. */
  fromVersion?: number;
  /** Where the missed operations come from (needed with `fromVersion`). */
  history?: HistorySource;
}

/** Why a subscription ended. */
export type CloseReason = AppError | undefined;

const DEFAULTS = {
  maxQueueEvents: 1024,
  maxQueueBytes: 1024 * 1024,
  maxCatchUp: 10_000,
  maxSubscribersPerDocument: 10_000,
};

/** Fan-out of document events to subscribers; implements the engine's {@link EventSink}. */
export class EventHub implements EventSink {
  #options: typeof DEFAULTS;
  #clock: Clock;
  #docs = new Map<string, { subscribers: Map<string, Subscription>; version: number }>();
  #count = 0;
  #closed = false;
  #slowDisconnects = 0;

  constructor(options: EventHubOptions = {}) {
    this.#options = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[]) {
      const value = options[key];
      if (value === undefined) continue;
      if (!Number.isInteger(value) || value < 1) {
        throw new RangeError(`Invalid ${key}: expected a positive integer`);
      }
      this.#options[key] = value;
    }
    this.#clock = options.clock ?? systemClock;
  }

  /**
   * Register a subscription; events published from now on are buffered until
   * {@link Subscription.resume}, then delivered.
   * @throws {AppError} RESOURCE_EXHAUSTED when the document has too many subscribers,
   *   ALREADY_EXISTS when `subscriberId` is taken by another user, UNAVAILABLE after close
   */
  subscribe(documentId: string, options: SubscribeOptions = {}): Subscription {
    if (this.#closed) throw new AppError("UNAVAILABLE", "Event hub is closed");
    let doc = this.#docs.get(documentId);
    const id = options.subscriberId || newId();
    const previous = doc?.subscribers.get(id);
    if (previous !== undefined) {
      if (previous.userId !== (options.userId ?? "")) {
        throw new AppError("ALREADY_EXISTS", `Subscriber id ${id} is in use on this document`);
      }
      previous.close(new AppError("ABORTED", `Subscription ${id} replaced by a new one`));
      doc = this.#docs.get(documentId);
    }
    if ((doc?.subscribers.size ?? 0) >= this.#options.maxSubscribersPerDocument) {
      throw new AppError(
        "RESOURCE_EXHAUSTED",
        `Too many subscribers on document ${documentId} ` +
          `(limit ${this.#options.maxSubscribersPerDocument})`,
      );
    }
    if (doc === undefined) {
      doc = { subscribers: new Map(), version: 0 };
      this.#docs.set(documentId, doc);
    }
    const subscription = new Subscription(documentId, id, options, {
      maxEvents: this.#options.maxQueueEvents,
      maxBytes: this.#options.maxQueueBytes,
      maxCatchUp: this.#options.maxCatchUp,
      clock: this.#clock,
      onSlow: () => this.#slowDisconnects++,
      onClose: (sub) => this.#remove(sub),
    });
    doc.subscribers.set(id, subscription);
    this.#count++;
    return subscription;
  }

  /** Deliver `event` to the document's subscribers (never throws, never blocks). */
  publish(event: DocEvent): void {
    const doc = this.#docs.get(event.documentId);
    if (doc === undefined) return;
    if (event.version > doc.version) doc.version = event.version;
    const size = estimateSize(event);
    for (const subscriber of [...doc.subscribers.values()]) subscriber.push(event, size);
  }

  /**
   * End a subscription gracefully (its stream completes).
   * @throws {AppError} NOT_FOUND for an unknown subscriber, PERMISSION_DENIED when it
   *   belongs to another user
   */
  unsubscribe(documentId: string, subscriberId: string, userId?: string): void {
    const subscription = this.#docs.get(documentId)?.subscribers.get(subscriberId);
    if (subscription === undefined) {
      throw new AppError("NOT_FOUND", `Subscriber ${subscriberId} not found on this document`);
    }
    if (userId !== undefined && subscription.userId !== userId) {
      throw new AppError("PERMISSION_DENIED", `Subscriber ${subscriberId} belongs to another user`);
    }
    subscription.close();
  }

  /** The highest document version seen in events (0 when unknown). */
  versionOf(documentId: string): number {
    return this.#docs.get(documentId)?.version ?? 0;
  }

  /** Subscriptions cut off so far because their queue was full (slow subscribers). */
  get slowDisconnects(): number {
    return this.#slowDisconnects;
  }

  /** Live subscribers of one document, or of all documents. */
  subscriberCount(documentId?: string): number {
    if (documentId === undefined) return this.#count;
    return this.#docs.get(documentId)?.subscribers.size ?? 0;
  }

  /** Close every subscription with `reason` (default: UNAVAILABLE, shutting down). */
  close(reason: CloseReason = new AppError("UNAVAILABLE", "Server is shutting down")): void {
    this.#closed = true;
    for (const doc of [...this.#docs.values()]) {
      for (const subscription of [...doc.subscribers.values()]) subscription.close(reason);
    }
  }

  #remove(subscription: Subscription): void {
    const doc = this.#docs.get(subscription.documentId);
    if (doc?.subscribers.get(subscription.id) !== subscription) return;
    doc.subscribers.delete(subscription.id);
    this.#count--;
    if (doc.subscribers.size === 0) this.#docs.delete(subscription.documentId);
  }
}

interface SubscriptionLimits {
  maxEvents: number;
  maxBytes: number;
  maxCatchUp: number;
  clock: Clock;
  /** Called when the subscription is cut off for a full queue. */
  onSlow?: () => void;
  onClose: (subscription: Subscription) => void;
}

/**
 * One subscriber's view of a document: an async iterator of events. Single consumer.
 * `next()` rejects with the {@link AppError} that closed it (slow subscriber, shutdown, a
 * failed catch-up), and completes after a graceful close.
 */
export class Subscription implements AsyncIterableIterator<DocEvent> {
  /** Subscriber id. */
  readonly id: string;
  readonly documentId: string;
  /** The subscribing user ("" when not given). */
  readonly userId: string;
  readonly sessionId: string;
  /** Resolves once the subscription is closed, with the error that closed it, if any. */
  readonly closed: Promise<CloseReason>;

  #limits: SubscriptionLimits;
  #queue: { event: DocEvent; size: number }[] = [];
  #head = 0;
  #bytes = 0;
  #catchUp: AsyncGenerator<DocEvent, void> | undefined;
  #resumed = false;
  #lastVersion = 0;
  #done = false;
  #reason: CloseReason;
  #wake: (() => void) | undefined;
  #resolveClosed!: (reason: CloseReason) => void;

  constructor(
    documentId: string,
    id: string,
    options: SubscribeOptions,
    limits: SubscriptionLimits,
  ) {
    this.id = id;
    this.documentId = documentId;
    this.userId = options.userId ?? "";
    this.sessionId = options.sessionId ?? "";
    this.#limits = limits;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  /** Events waiting in the queue. */
  get queued(): number {
    return this.#queue.length - this.#head;
  }

  /** Estimated bytes waiting in the queue. */
  get queuedBytes(): number {
    return this.#bytes;
  }

  /** The version of the last operation delivered (or the version live delivery starts at). */
  get lastVersion(): number {
    return this.#lastVersion;
  }

  /**
   * Start delivery: catch-up operations (when `fromVersion` is given), `subscribed`, then
   * the buffered and live events.
   * @throws {TypeError} when called twice or `fromVersion` comes without `history`
   */
  resume(options: ResumeOptions): void {
    if (this.#resumed) throw new TypeError("Subscription already resumed");
    if (options.fromVersion !== undefined && options.history === undefined) {
      throw new TypeError("Invalid resume: fromVersion needs a history source");
    }
    this.#resumed = true;
    this.#catchUp = this.#catchUpEvents(options);
    this.#wake?.();
  }

  /** Queue a live event (called by the hub); overflow closes the subscription. */
  push(event: DocEvent, size: number): void {
    if (this.#done) return;
    if (this.queued + 1 > this.#limits.maxEvents || this.#bytes + size > this.#limits.maxBytes) {
      this.#limits.onSlow?.();
      this.close(
        new AppError(
          "RESOURCE_EXHAUSTED",
          `Slow subscriber ${this.id} disconnected: more than ${this.#limits.maxEvents} events ` +
            `or ${this.#limits.maxBytes} bytes queued`,
        ),
      );
      return;
    }
    this.#queue.push({ event, size });
    this.#bytes += size;
    this.#wake?.();
  }

  /** The next event; waits for one. */
  async next(): Promise<IteratorResult<DocEvent>> {
    for (;;) {
      if (this.#done) return this.#finish();
      if (this.#catchUp !== undefined) {
        let step: IteratorResult<DocEvent, void>;
        try {
          step = await this.#catchUp.next();
        } catch (error) {
          this.close(AppError.from(error));
          return this.#finish();
        }
        if (this.#done) return this.#finish();
        if (!step.done) return { done: false, value: step.value };
        this.#catchUp = undefined;
        continue;
      }
      if (this.#resumed && this.queued > 0) {
        const item = this.#queue[this.#head]!;
        this.#queue[this.#head++] = undefined!;
        this.#bytes -= item.size;
        if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
          this.#queue = this.#queue.slice(this.#head);
          this.#head = 0;
        }
        const version = item.event.operation?.version;
        if (item.event.type === "operation_applied" && version !== undefined) {
          if (version <= this.#lastVersion) continue; // already delivered by the catch-up
          this.#lastVersion = version;
        }
        return { done: false, value: item.event };
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = undefined;
    }
  }

  /** Stop consuming: closes the subscription gracefully. */
  return(): Promise<IteratorResult<DocEvent>> {
    this.close();
    return Promise.resolve({ done: true, value: undefined });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<DocEvent> {
    return this;
  }

  /** End the subscription: gracefully (no reason) or with an error; drops the queue. */
  close(reason?: AppError): void {
    if (this.#done) return;
    this.#done = true;
    this.#reason = reason;
    this.#queue = [];
    this.#head = 0;
    this.#bytes = 0;
    this.#limits.onClose(this);
    this.#resolveClosed(reason);
    this.#wake?.();
  }

  #finish(): IteratorResult<DocEvent> {
    if (this.#reason !== undefined) throw this.#reason;
    return { done: true, value: undefined };
  }

  async *#catchUpEvents(options: ResumeOptions): AsyncGenerator<DocEvent, void> {
    const { currentVersion, fromVersion, history } = options;
    let last = currentVersion;
    if (fromVersion !== undefined && history !== undefined) {
      if (!Number.isInteger(fromVersion) || fromVersion < 0) {
        throw new AppError("INVALID_ARGUMENT", "Invalid from_version: expected an integer >= 0");
      }
      if (fromVersion > currentVersion) {
        throw new AppError(
          "FAILED_PRECONDITION",
          `from_version ${fromVersion} is ahead of the document version ${currentVersion}`,
        );
      }
      if (currentVersion - fromVersion > this.#limits.maxCatchUp) {
        yield this.#event(
          "resync_required",
          currentVersion,
          `${currentVersion - fromVersion} operations missed, over the catch-up limit of ` +
            `${this.#limits.maxCatchUp}: reload the document`,
        );
      } else {
        last = fromVersion;
        let token = "";
        let gone = false;
        do {
          const page = await history(fromVersion, token);
          if (page.historyGone) {
            gone = true;
            break;
          }
          for (const operation of page.operations) {
            if (operation.version <= last) continue;
            if (operation.version !== last + 1) {
              gone = true; // a hole in the history: cannot catch up exactly
              break;
            }
            last = operation.version;
            yield {
              type: "operation_applied",
              documentId: this.documentId,
              version: operation.version,
              timestamp: operation.timestamp,
              userId: operation.authorId,
              operation,
            };
          }
          token = page.nextPageToken;
        } while (token !== "" && !gone);
        if (gone || last < currentVersion) {
          last = Math.max(last, currentVersion);
          yield this.#event(
            "resync_required",
            last,
            `History after version ${fromVersion} is no longer available: reload the document`,
          );
        }
      }
    }
    this.#lastVersion = last;
    yield this.#event("subscribed", last);
  }

  #event(type: "resync_required" | "subscribed", version: number, reason?: string): DocEvent {
    return {
      type,
      documentId: this.documentId,
      version,
      timestamp: this.#limits.clock.now(),
      ...(this.userId ? { userId: this.userId } : {}),
      ...(reason === undefined ? {} : { reason }),
    };
  }
}

/** A cheap estimate of an event's wire size: its JSON text length (UTF-16 units). */
function estimateSize(event: DocEvent): number {
  try {
    return JSON.stringify(event).length;
  } catch {
    return 1024; // not JSON-serialisable (should not happen): count a nominal size
  }
}
