import assert from "node:assert/strict";
import { credentials, status } from "@grpc/grpc-js";
import { AppError } from "../kernel/mod.ts";
import { freePort, tempDir } from "../kernel/testing.ts";
import { startStateSyncService, StateSyncConfigSchema } from "../statesync/mod.ts";
import * as pb from "../proto/gen/statesync.ts";
import { SubscriptionMux } from "./subscription_mux.ts";

type Statesync = Awaited<ReturnType<typeof startStateSyncService>>;

async function startStatesync(overrides: Record<string, unknown> = {}): Promise<Statesync> {
  return await startStateSyncService(
    StateSyncConfigSchema.parse({ port: 0, storage: "memory", ...overrides }),
  );
}

function unary<T>(start: (cb: (error: Error | null, response: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    start((error, response) => (error ? reject(error) : resolve(response)));
  });
}

function createDoc(client: pb.StateSyncServiceClient, actorId: string): Promise<pb.Document> {
  return unary<pb.Document>((cb) =>
    client.createDocument(
      pb.CreateDocumentRequest.fromPartial({
        actorId,
        name: "doc",
        type: pb.DocumentType.DOCUMENT_TYPE_TEXT,
      }),
      cb,
    )
  );
}

function insertOp(documentId: string, text: string): pb.SubmitRequest {
  return pb.SubmitRequest.fromPartial({
    requestId: text,
    apply: {
      actorId: "alice",
      operation: {
        documentId,
        baseVersion: 0,
        sessionId: "s",
        clientOpId: crypto.randomUUID(),
        components: [{
          path: [{ element: { $case: "key", value: "text" } }],
          action: { $case: "textInsert", value: { offset: 0, text } },
        }],
      },
    },
  });
}

/** Submit `requests` as ONE SubmitBatch and wait for its results. */
async function submitBatch(
  client: pb.StateSyncServiceClient,
  requests: pb.SubmitRequest[],
): Promise<pb.SubmitResult[]> {
  const stream = client.submitOperationBatches();
  const result = new Promise<pb.SubmitBatchResult>((resolve, reject) => {
    stream.once("data", resolve);
    stream.once("error", reject);
  });
  stream.write({ requests });
  const { results } = await result;
  stream.end();
  for (const r of results) assert.equal(r.outcome?.$case, "applied", JSON.stringify(r));
  return results;
}

/** Collects what one subscription receives; `wait` resolves once `test` holds. */
class Feed {
  events: pb.DocumentEvent[] = [];
  error: AppError | undefined;
  ended = false;
  #waiters: Array<() => void> = [];
  readonly handlers = {
    onData: (event: pb.DocumentEvent) => this.#note(() => this.events.push(event)),
    onError: (error: unknown) => this.#note(() => (this.error = AppError.from(error))),
    onEnd: () => this.#note(() => (this.ended = true)),
  };

  #note(change: () => unknown): void {
    change();
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Versions of the operation events received. */
  get versions(): number[] {
    return this.events.filter((e) => e.type === pb.EventType.EVENT_TYPE_OPERATION_APPLIED)
      .map((e) => e.version);
  }

  get live(): boolean {
    return this.events.some((e) => e.type === pb.EventType.EVENT_TYPE_SUBSCRIBED);
  }

  async wait(test: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 5_000;
    while (!test()) {
      if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, 1_000); // re-check the deadline
      });
      clearTimeout(timer);
    }
  }
}

function subscribeRequest(
  documentId: string,
  extra: Partial<pb.SubscribeDocumentRequest> = {},
): pb.SubscribeDocumentRequest {
  return pb.SubscribeDocumentRequest.fromPartial({
    actorId: "alice",
    documentId,
    subscriberId: crypto.randomUUID(),
    ...extra,
  });
}

Deno.test("SubscribeDocuments: events of several documents produced together travel in one batch; errors end only their subscription", async () => {
  await using statesync = await startStatesync();
  const client = new pb.StateSyncServiceClient(statesync.address, credentials.createInsecure());
  try {
    const a = await createDoc(client, "alice");
    const b = await createDoc(client, "alice");
    const stream = client.subscribeDocuments();
    const batches: pb.DocumentEventBatch[] = [];
    let wake: (() => void) | undefined;
    stream.on("data", (batch: pb.DocumentEventBatch) => {
      batches.push(batch);
      wake?.();
    });
    stream.on("error", () => {});
    const updates = (key: number) =>
      batches.flatMap((batch) => batch.updates.filter((u) => u.key === key));
    const until = async (test: () => boolean) => {
      const deadline = Date.now() + 5_000;
      while (!test()) {
        assert.ok(Date.now() < deadline, "timed out");
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 500);
        });
      }
    };
    const subscribed = (key: number) =>
      updates(key).some((u) => u.events.some((e) => e.type === pb.EventType.EVENT_TYPE_SUBSCRIBED));
    const subscribe = (key: number, request: pb.SubscribeDocumentRequest) =>
      stream.write({ key, action: { $case: "subscribe", value: request } });

    subscribe(1, subscribeRequest(a.id));
    subscribe(2, subscribeRequest(b.id));
    subscribe(3, subscribeRequest("01890a5d-ac96-774b-bcce-b302099a8057")); // unknown
    subscribe(4, subscribeRequest(a.id, { actorId: "mallory" })); // may not read
    await until(() =>
      subscribed(1) && subscribed(2) && updates(3).some((u) => u.ended) &&
      updates(4).some((u) => u.ended)
    );
    assert.equal(updates(3).find((u) => u.ended)!.ended!.code, status.NOT_FOUND);
    assert.equal(updates(4).find((u) => u.ended)!.ended!.code, status.PERMISSION_DENIED);

    // One SubmitBatch with an op on each document: both events leave in one message.
    const before = batches.length;
    await submitBatch(client, [insertOp(a.id, "x"), insertOp(b.id, "y")]);
    await until(() => updates(1).length + updates(2).length >= 4);
    const both = batches.slice(before).find((batch) =>
      batch.updates.some((u) => u.key === 1) && batch.updates.some((u) => u.key === 2)
    );
    assert.ok(both, `one batch for both documents, got ${JSON.stringify(batches.slice(before))}`);
    assert.deepEqual(both.updates.map((u) => u.events.map((e) => e.version)), [[1], [1]]);

    // An unsubscribed key hears nothing more; the others carry on.
    stream.write({ key: 1, action: { $case: "unsubscribe", value: true } });
    await submitBatch(client, [insertOp(a.id, "p")]); // a: version 2
    await submitBatch(client, [insertOp(b.id, "q")]); // b: version 2
    await until(() => updates(2).some((u) => u.events.some((e) => e.version === 2)));
    assert.ok(!updates(1).some((u) => u.events.some((e) => e.version === 2)));
    stream.end();
    stream.cancel();
  } finally {
    client.close();
  }
});

Deno.test("SubscriptionMux: each feed gets its own events, resumes from a version, and survives another feed's error", async () => {
  await using statesync = await startStatesync();
  const client = new pb.StateSyncServiceClient(statesync.address, credentials.createInsecure());
  const mux = new SubscriptionMux(() => client.subscribeDocuments());
  try {
    const a = await createDoc(client, "alice");
    const b = await createDoc(client, "alice");
    await submitBatch(client, [insertOp(a.id, "1")]);
    await submitBatch(client, [insertOp(a.id, "2")]);

    const fromStart = new Feed(); // a, resumed from version 0: both ops replayed first
    const live = new Feed(); // b, live only
    const unknown = new Feed();
    mux.subscribe(subscribeRequest(a.id, { fromVersion: 0 }), fromStart.handlers);
    mux.subscribe(subscribeRequest(b.id), live.handlers);
    mux.subscribe(subscribeRequest("01890a5d-ac96-774b-bcce-b302099a8057"), unknown.handlers);
    await unknown.wait(() => unknown.error !== undefined, "the unknown document's error");
    assert.equal(unknown.error!.status, "NOT_FOUND");
    await fromStart.wait(() => fromStart.live, "a live");
    await live.wait(() => live.live, "b live");
    assert.deepEqual(fromStart.versions, [1, 2]);

    await submitBatch(client, [insertOp(a.id, "3"), insertOp(b.id, "x")]);
    await fromStart.wait(() => fromStart.versions.length === 3, "a's third op");
    await live.wait(() => live.versions.length === 1, "b's first op");
    assert.deepEqual(fromStart.versions, [1, 2, 3]);
    assert.deepEqual(live.versions, [1]);
    assert.equal(mux.size, 2);

    // A cancelled feed hears nothing more; the other one does.
    const cancelled = new Feed();
    const handle = mux.subscribe(subscribeRequest(a.id), cancelled.handlers);
    await cancelled.wait(() => cancelled.live, "third feed live");
    handle.cancel();
    await submitBatch(client, [insertOp(a.id, "4")]);
    await fromStart.wait(() => fromStart.versions.length === 4, "a's fourth op");
    assert.deepEqual(cancelled.versions, []);
    assert.equal(fromStart.error ?? live.error, undefined);
  } finally {
    mux.close();
    client.close();
  }
});

Deno.test("SubscriptionMux: losing the stream fails every feed; re-subscribing from their versions opens a new stream and loses nothing", async () => {
  await using dir = await tempDir("aetherflow-mux-");
  const port = freePort();
  const config = { storage: "kv", dataDir: dir.path, port };
  let statesync = await startStatesync(config);
  const client = new pb.StateSyncServiceClient(statesync.address, credentials.createInsecure(), {
    "grpc.initial_reconnect_backoff_ms": 50,
    "grpc.max_reconnect_backoff_ms": 200,
  });
  let opened = 0;
  const mux = new SubscriptionMux(() => {
    opened++;
    return client.subscribeDocuments();
  });
  try {
    const docs = [await createDoc(client, "alice"), await createDoc(client, "alice")];
    const feeds = docs.map(() => new Feed());
    docs.forEach((doc, i) => mux.subscribe(subscribeRequest(doc.id), feeds[i]!.handlers));
    for (const feed of feeds) await feed.wait(() => feed.live, "live");
    await submitBatch(client, docs.map((doc) => insertOp(doc.id, "a")));
    for (const feed of feeds) await feed.wait(() => feed.versions.length === 1, "first op");
    assert.equal(opened, 1, "both feeds share one stream");

    await statesync.shutdown();
    for (const feed of feeds) await feed.wait(() => feed.error !== undefined, "stream loss");
    for (const feed of feeds) assert.equal(feed.error!.status, "UNAVAILABLE");
    assert.equal(mux.size, 0);

    statesync = await startStatesync(config);
    await submitBatch(client, docs.map((doc) => insertOp(doc.id, "b"))); // missed: version 2
    const resumed = docs.map(() => new Feed());
    docs.forEach((doc, i) =>
      mux.subscribe(subscribeRequest(doc.id, { fromVersion: 1 }), resumed[i]!.handlers)
    );
    for (const feed of resumed) await feed.wait(() => feed.live, "live again");
    for (const feed of resumed) assert.deepEqual(feed.versions, [2]);
    assert.equal(opened, 2, "one new stream for every re-subscription");
  } finally {
    mux.close();
    client.close();
    await statesync.shutdown();
  }
});
