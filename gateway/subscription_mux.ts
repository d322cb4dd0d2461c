/**
 * The client side of SubscribeDocuments: every document subscription of this gateway to one
 * statesync shares ONE gRPC stream, and the events produced together for all of them arrive
 * in one DocumentEventBatch (far fewer messages than a SubscribeDocument stream per document).
 * Each subscription keeps the callbacks of a stream of its own ({@link StreamHandlers}): its
 * events, then its end or its error, which reaches only it. When the shared stream fails,
 * every subscription gets the error (callers re-subscribe, from their last version); the
 * next subscribe opens a new stream.
 *
 * @example
 * ```ts
 * const mux = new SubscriptionMux(() => client.subscribeDocuments());
 * const handle = mux.subscribe(request, { onData, onError, onEnd });
 * handle.cancel();
 * ```
 * @module
 */
import { AppError } from "../kernel/mod.ts";
import type {
  DocumentEvent,
  DocumentEventBatch,
  SubscribeDocumentRequest,
  SubscriptionControl,
} from "../proto/gen/statesync.ts";
import type { StreamHandle, StreamHandlers } from "./backends.ts";

/** The duplex stream of a SubscribeDocuments call, as grpc-js returns it. */
export interface SubscriptionStream {
  write(control: SubscriptionControl): unknown;
  end(): unknown;
  cancel(): void;
  on(event: "data", fn: (batch: DocumentEventBatch) => void): unknown;
  on(event: "error", fn: (error: Error) => void): unknown;
  on(event: "end", fn: () => void): unknown;
}

/** Many document subscriptions over one SubscribeDocuments stream (opened on demand). */
export class SubscriptionMux {
  #open: () => SubscriptionStream;
  #stream: SubscriptionStream | undefined;
  #subscriptions = new Map<number, StreamHandlers<DocumentEvent>>();
  /** Keys are never reused, so a late event of a cancelled subscription finds nobody. */
  #nextKey = 1;

  constructor(open: () => SubscriptionStream) {
    this.#open = open;
  }

  /** Subscriptions currently open. */
  get size(): number {
    return this.#subscriptions.size;
  }

  /** Start one subscription; its events and its end reach `handlers` only. */
  subscribe(
    request: SubscribeDocumentRequest,
    handlers: StreamHandlers<DocumentEvent>,
  ): StreamHandle {
    const key = this.#nextKey++;
    const stream = this.#stream ?? this.#start();
    this.#subscriptions.set(key, handlers);
    stream.write({ key, action: { $case: "subscribe", value: request } });
    return {
      cancel: () => {
        if (this.#subscriptions.get(key) !== handlers) return; // already ended
        this.#subscriptions.delete(key);
        if (this.#stream !== stream) return;
        stream.write({ key, action: { $case: "unsubscribe", value: true } });
        this.#releaseIfIdle();
      },
    };
  }

  /** End the shared stream; open subscriptions get no further callbacks. */
  close(): void {
    this.#subscriptions.clear();
    this.#releaseIfIdle();
  }

  #start(): SubscriptionStream {
    const stream = this.#open();
    this.#stream = stream;
    stream.on("data", (batch) => {
      for (const update of batch.updates) this.#apply(update);
      this.#releaseIfIdle();
    });
    const lost = (error: AppError) => {
      if (this.#stream !== stream) return;
      this.#stream = undefined;
      const orphans = [...this.#subscriptions.values()];
      this.#subscriptions.clear();
      for (const handlers of orphans) handlers.onError(error);
    };
    stream.on("error", (error) => lost(AppError.from(error)));
    stream.on("end", () => lost(new AppError("UNAVAILABLE", "Subscription stream ended")));
    return stream;
  }

  #apply(update: DocumentEventBatch["updates"][number]): void {
    const handlers = this.#subscriptions.get(update.key);
    if (handlers === undefined) return; // cancelled meanwhile
    for (const event of update.events) {
      handlers.onData(event);
      if (this.#subscriptions.get(update.key) !== handlers) return; // cancelled by onData
    }
    const ended = update.ended;
    if (ended === undefined) return;
    this.#subscriptions.delete(update.key);
    if (ended.code === 0) handlers.onEnd();
    else handlers.onError(new AppError(AppError.statusName(ended.code), ended.message));
  }

  /** No subscription left: end the stream rather than keep an idle call open. */
  #releaseIfIdle(): void {
    const stream = this.#stream;
    if (stream === undefined || this.#subscriptions.size > 0) return;
    this.#stream = undefined;
    stream.end();
    stream.cancel();
  }
}
