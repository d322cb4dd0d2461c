import assert from "node:assert/strict";
import { AppError, newId } from "../kernel/mod.ts";
import type { DocEvent } from "./events.ts";
import type { OperationRecord } from "./model.ts";
import { EventHub, type HistoryPage, type Subscription } from "./hub.ts";

const documentId = newId();

function op(version: number): OperationRecord {
  return {
    id: newId(),
    documentId,
    baseVersion: version - 1,
    version,
    authorId: "alice",
    sessionId: "s",
    clientOpId: `c${version}`,
    timestamp: version,
    op: [{ path: ["n"], action: { type: "increment", delta: 1 } }],
  };
}

function applied(version: number): DocEvent {
  return {
    type: "operation_applied",
    documentId,
    version,
    timestamp: version,
    operation: op(version),
  };
}

/** A history of `versions` ops served in pages of `pageSize`; `gate` delays every page. */
function historyOf(versions: number, pageSize = 2, gate?: () => Promise<void>) {
  const ops = Array.from({ length: versions }, (_, i) => op(i + 1));
  const calls: string[] = [];
  return {
    calls,
    source: async (fromVersion: number, token: string): Promise<HistoryPage> => {
      calls.push(`${fromVersion}:${token}`);
      await gate?.();
      const start = token === "" ? fromVersion : Number(token);
      const page = ops.slice(start, start + pageSize);
      const next = start + pageSize < ops.length ? String(start + pageSize) : "";
      return { operations: page, nextPageToken: next };
    },
  };
}

async function take(sub: Subscription, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const step = await sub.next();
    if (step.done) break;
    const e = step.value;
    out.push(
      e.type === "operation_applied" ? `op${e.operation?.version}` : `${e.type}@${e.version}`,
    );
  }
  return out;
}

Deno.test("a live subscription gets subscribed, then only events after the version it started at", async () => {
  const hub = new EventHub();
  const sub = hub.subscribe(documentId, { userId: "bob" });
  hub.publish(applied(5)); // committed before the version read below: skipped
  hub.publish({ type: "lock_acquired", documentId, version: 5, timestamp: 1, userId: "x" });
  sub.resume({ currentVersion: 5 });
  hub.publish(applied(6));
  assert.deepEqual(await take(sub, 3), ["subscribed@5", "lock_acquired@5", "op6"]);
  assert.equal(hub.subscriberCount(documentId), 1);
  sub.close();
  assert.equal(hub.subscriberCount(), 0);
});

/** Pages wait until the test lets them through, one at a time. */
function pageGate() {
  const waiting: (() => void)[] = [];
  let arrived: (() => void) | undefined;
  return {
    gate: () =>
      new Promise<void>((resolve) => {
        waiting.push(resolve);
        arrived?.();
      }),
    /** Wait for the next page request and return the function that lets it through. */
    async next(): Promise<() => void> {
      while (waiting.length === 0) await new Promise<void>((resolve) => (arrived = resolve));
      return waiting.shift()!;
    },
  };
}

Deno.test("resume from a version delivers the missed ops, subscribed, then live ops without gap or duplicate", async () => {
  const hub = new EventHub();
  const pages = pageGate();
  const history = historyOf(6, 2, pages.gate);
  const sub = hub.subscribe(documentId, { userId: "bob" });
  sub.resume({ currentVersion: 6, fromVersion: 2, history: history.source });
  const reading = take(sub, 7);
  // While the catch-up reads history, ops 6 (also in history), 7 and 8 go live.
  const first = await pages.next();
  hub.publish(applied(6));
  hub.publish(applied(7));
  first();
  const second = await pages.next();
  hub.publish(applied(8));
  second();
  assert.deepEqual(await reading, ["op3", "op4", "op5", "op6", "subscribed@6", "op7", "op8"]);
  assert.deepEqual(history.calls, ["2:", "2:4"]);
  hub.publish(applied(9));
  assert.deepEqual(await take(sub, 1), ["op9"]);
  sub.close();
});

Deno.test("resume gets resync_required when the history is gone, then live events", async () => {
  const hub = new EventHub();
  const sub = hub.subscribe(documentId);
  const gone = () => Promise.resolve({ operations: [], nextPageToken: "", historyGone: true });
  sub.resume({ currentVersion: 10, fromVersion: 3, history: gone });
  hub.publish(applied(10));
  hub.publish(applied(11));
  const events = await take(sub, 3);
  assert.deepEqual(events, ["resync_required@10", "subscribed@10", "op11"]);
  sub.close();
});

Deno.test("resume gets resync_required when the gap is over the catch-up limit", async () => {
  const hub = new EventHub({ maxCatchUp: 100 });
  const sub = hub.subscribe(documentId);
  const history = historyOf(200);
  sub.resume({ currentVersion: 200, fromVersion: 99, history: history.source });
  const first = await sub.next();
  assert.equal(first.value?.type, "resync_required");
  assert.match(first.value?.reason ?? "", /101 operations missed, over the catch-up limit of 100/);
  assert.deepEqual(await take(sub, 1), ["subscribed@200"]);
  assert.deepEqual(history.calls, []);
  sub.close();
});

Deno.test("resume from a version ahead of the document fails with FAILED_PRECONDITION", async () => {
  const hub = new EventHub();
  const sub = hub.subscribe(documentId);
  sub.resume({ currentVersion: 3, fromVersion: 4, history: historyOf(3).source });
  await assert.rejects(
    sub.next(),
    (e) => e instanceof AppError && e.status === "FAILED_PRECONDITION" && /ahead/.test(e.message),
  );
  assert.equal(hub.subscriberCount(), 0);
});

Deno.test("a slow subscriber is disconnected with RESOURCE_EXHAUSTED and its queue freed", async () => {
  const hub = new EventHub({ maxQueueEvents: 3 });
  const slow = hub.subscribe(documentId, { subscriberId: "slow" });
  const fast = hub.subscribe(documentId, { subscriberId: "fast" });
  slow.resume({ currentVersion: 0 });
  fast.resume({ currentVersion: 0 });
  const fastEvents: string[] = [];
  for (let v = 1; v <= 5; v++) {
    hub.publish(applied(v));
    fastEvents.push(...await take(fast, v === 1 ? 2 : 1));
  }
  assert.deepEqual(fastEvents, ["subscribed@0", "op1", "op2", "op3", "op4", "op5"]);
  const reason = await slow.closed;
  assert.equal(reason?.status, "RESOURCE_EXHAUSTED");
  assert.match(reason?.message ?? "", /Slow subscriber slow disconnected: more than 3 events/);
  assert.equal(slow.queued, 0);
  assert.equal(slow.queuedBytes, 0);
  await assert.rejects(slow.next(), (e) => e === reason);
  assert.equal(hub.subscriberCount(documentId), 1);
  assert.equal(hub.slowDisconnects, 1);
  fast.close();
  assert.equal(hub.slowDisconnects, 1, "an ordinary close is not a slow disconnect");
});

Deno.test("the byte bound disconnects a subscriber whose queued events are too large", async () => {
  const hub = new EventHub({ maxQueueBytes: 2000 });
  const sub = hub.subscribe(documentId);
  const big: DocEvent = { ...applied(1), reason: "x".repeat(1500) };
  hub.publish(big);
  assert.equal(sub.queued, 1);
  hub.publish({ ...applied(2), reason: "x".repeat(1500) });
  assert.equal((await sub.closed)?.status, "RESOURCE_EXHAUSTED");
});

Deno.test("unsubscribe() completes the stream and is limited to the subscriber's user", async () => {
  const hub = new EventHub();
  const sub = hub.subscribe(documentId, { subscriberId: "s1", userId: "bob" });
  sub.resume({ currentVersion: 0 });
  assert.deepEqual(await take(sub, 1), ["subscribed@0"]);
  const pending = sub.next();
  assert.throws(
    () => hub.unsubscribe(documentId, "s1", "eve"),
    (e) => e instanceof AppError && e.status === "PERMISSION_DENIED",
  );
  assert.throws(
    () => hub.unsubscribe(documentId, "nope", "bob"),
    (e) => e instanceof AppError && e.status === "NOT_FOUND",
  );
  hub.unsubscribe(documentId, "s1", "bob");
  assert.deepEqual(await pending, { done: true, value: undefined });
  assert.equal(await sub.closed, undefined);
  assert.equal(hub.subscriberCount(), 0);
});

Deno.test("reusing a subscriber id replaces the user's older subscription", async () => {
  const hub = new EventHub();
  const old = hub.subscribe(documentId, { subscriberId: "tab", userId: "bob" });
  const fresh = hub.subscribe(documentId, { subscriberId: "tab", userId: "bob" });
  assert.equal((await old.closed)?.status, "ABORTED");
  assert.throws(
    () => hub.subscribe(documentId, { subscriberId: "tab", userId: "eve" }),
    (e) => e instanceof AppError && e.status === "ALREADY_EXISTS",
  );
  assert.equal(hub.subscriberCount(documentId), 1);
  fresh.close();
});

Deno.test("close() ends every subscription with UNAVAILABLE and refuses new ones", async () => {
  const hub = new EventHub();
  const a = hub.subscribe(documentId);
  const b = hub.subscribe(newId());
  hub.close();
  assert.equal((await a.closed)?.status, "UNAVAILABLE");
  assert.equal((await b.closed)?.status, "UNAVAILABLE");
  assert.throws(() => hub.subscribe(documentId), AppError);
});

Deno.test("versionOf() tracks the highest version published to a watched document", () => {
  const hub = new EventHub();
  const sub = hub.subscribe(documentId);
  hub.publish(applied(4));
  hub.publish(applied(3));
  assert.equal(hub.versionOf(documentId), 4);
  assert.equal(hub.versionOf(newId()), 0);
  sub.close();
});
