/**
 * The server side of SubscribeDocuments: many document subscriptions over one gRPC stream.
 * The client adds and removes subscriptions with SubscriptionControl messages (each keyed by
 * a number of its choosing); the events of every subscription produced in one turn of the
 * event loop (e.g. one group commit) leave together in ONE DocumentEventBatch, instead of one
 * message per event per subscription (grpc-js costs tens of µs of CPU per message and side).
 *
 * An error ends only its own subscription (`SubscriptionUpdate.ended`); the stream goes on.
 * Backpressure: while grpc-js reports a full buffer, subscriptions stop draining their hub
 * queues, whose bounds then cut off the ones that stay stuck.
 *
 * @example
 * ```ts
 * subscribeDocuments: (call) => serveSubscriptionMux(call, (request, output) => run(request, output)),
 * ```
 * @module
 */
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { AppError } from "../kernel/mod.ts";
import type * as pb from "../proto/gen/statesync.ts";

/** Where one subscription writes its events (a whole stream, or one key of a mux). */
export interface SubscriptionOutput {
  /** True once the receiver no longer wants events. */
  readonly cancelled: boolean;
  /** Call `close` when the receiver goes away. */
  onCancel(close: () => void): void;
  /** Queue one event; false = the receiver is backed up: await `drained` before the next. */
  write(event: pb.DocumentEvent): boolean;
  /** Resolves when writing may go on, or when `closed` settles first. */
  drained(closed: Promise<unknown>): Promise<void>;
}

/** Runs one subscription to its end: undefined = ended gracefully, else the error. */
export type RunSubscription = (
  request: pb.SubscribeDocumentRequest,
  output: SubscriptionOutput,
) => Promise<AppError | undefined>;

/** A served SubscribeDocuments call. */
export interface SubscriptionMux {
  /** End every subscription and the call with `reason` (the client re-subscribes elsewhere). */
  stop(reason: AppError): void;
  /** Resolves once the call is over and every subscription has ended. */
  readonly finished: Promise<void>;
}

/** Events of one batch beyond which it is written at once (bounds the message size). */
const MAX_BATCH_EVENTS = 1024;
/** Subscriptions one call may hold at once (bounds what one client can make us keep). */
export const MAX_SUBSCRIPTIONS_PER_CALL = 16_384;

interface Entry {
  key: number;
  cancelled: boolean;
  close: (() => void) | undefined;
  /** This subscription's update in the batch being gathered, if any. */
  update: pb.SubscriptionUpdate | undefined;
}

/**
 * Serve one SubscribeDocuments call; `run` runs each subscription. A subscribe beyond
 * `maxSubscriptions` open ones ends at once with RESOURCE_EXHAUSTED.
 */
export function serveSubscriptionMux(
  call: ServerDuplexStream<pb.SubscriptionControl, pb.DocumentEventBatch>,
  run: RunSubscription,
  maxSubscriptions = MAX_SUBSCRIPTIONS_PER_CALL,
): SubscriptionMux {
  const active = new Map<number, Entry>();
  const running = new Set<Promise<void>>();
  let batch: pb.SubscriptionUpdate[] = [];
  let batchEvents = 0;
  let touched: Entry[] = [];
  let flushScheduled = false;
  /** Set while grpc-js reports a full buffer; resolves on its "drain". */
  let blocked: Promise<void> | undefined;
  let over = false;
  let resolveFinished!: () => void;
  const callOver = new Promise<void>((resolve) => (resolveFinished = resolve));

  const flush = () => {
    flushScheduled = false;
    if (batch.length === 0) return;
    const updates = batch;
    for (const entry of touched) entry.update = undefined;
    batch = [];
    touched = [];
    batchEvents = 0;
    if (over || call.cancelled) return;
    if (!call.write({ updates }) && blocked === undefined) {
      blocked = new Promise((resolve) =>
        call.once("drain", () => {
          blocked = undefined;
          resolve();
        })
      );
    }
  };
  // setImmediate runs after every promise job of this turn: the subscription loops woken by
  // one publish have all queued their events by then.
  const updateOf = (entry: Entry): pb.SubscriptionUpdate => {
    if (entry.update === undefined) {
      entry.update = { key: entry.key, events: [], ended: undefined };
      batch.push(entry.update);
      touched.push(entry);
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flush);
      }
    }
    return entry.update;
  };

  const cancel = (entry: Entry) => {
    entry.cancelled = true;
    if (active.get(entry.key) === entry) active.delete(entry.key);
    entry.close?.();
  };

  const start = (key: number, request: pb.SubscribeDocumentRequest) => {
    const previous = active.get(key);
    if (previous !== undefined) cancel(previous); // a reused key replaces its subscription
    const entry: Entry = { key, cancelled: false, close: undefined, update: undefined };
    if (active.size >= maxSubscriptions) {
      const full = new AppError(
        "RESOURCE_EXHAUSTED",
        `At most ${maxSubscriptions} subscriptions per SubscribeDocuments call`,
      );
      updateOf(entry).ended = { code: full.code, message: full.message };
      return;
    }
    active.set(key, entry);
    const output: SubscriptionOutput = {
      get cancelled() {
        return entry.cancelled || over;
      },
      onCancel: (close) => {
        entry.close = close;
        if (entry.cancelled || over) close(); // cancelled while it was starting
      },
      write: (event) => {
        updateOf(entry).events.push(event);
        if (++batchEvents >= MAX_BATCH_EVENTS) flush();
        return blocked === undefined;
      },
      drained: (closed) => Promise.race([blocked, closed]).then(() => {}),
    };
    const task = run(request, output).then(
      (error) => error,
      (error) => AppError.from(error),
    ).then((error) => {
      if (entry.cancelled || over) return;
      active.delete(key);
      updateOf(entry).ended = error === undefined
        ? { code: 0, message: "" }
        : { code: error.code, message: error.message };
    });
    running.add(task);
    void task.finally(() => running.delete(task));
  };

  const end = (reason?: AppError) => {
    if (over) return;
    flush(); // what the subscriptions produced so far goes first
    over = true;
    for (const entry of [...active.values()]) cancel(entry);
    if (!call.cancelled) {
      if (reason === undefined) call.end();
      else call.emit("error", reason.toServiceError());
    }
    resolveFinished();
  };

  call.on("data", (control: pb.SubscriptionControl) => {
    if (over) return;
    const action = control.action;
    if (action?.$case === "subscribe") start(control.key, action.value);
    else if (action?.$case === "unsubscribe") {
      const entry = active.get(control.key);
      if (entry !== undefined) cancel(entry);
    }
  });
  call.on("end", () => end());
  call.on("cancelled", () => end());
  call.on("error", () => end());

  return {
    stop: (reason) => end(reason),
    get finished() {
      return callOver.then(() => Promise.all(running)).then(() => {});
    },
  };
}
