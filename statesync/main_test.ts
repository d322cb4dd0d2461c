import assert from "node:assert/strict";
import { credentials, type ServiceError, status } from "@grpc/grpc-js";
import { freePort, tempDir } from "../kernel/testing.ts";
import * as pb from "../proto/gen/statesync.ts";
import { opToProto } from "./convert.ts";
import { DocumentManager } from "./documents.ts";
import { KvDocumentStore } from "./store_kv.ts";
import { kvPathFor } from "./service.ts";
import { startMain } from "./_test_child.ts";

function rpc<T>(start: (cb: (error: ServiceError | null, response: T) => void) => unknown) {
  return new Promise<T>((resolve, reject) => {
    start((error, response) => (error ? reject(error) : resolve(response)));
  });
}

Deno.test("main.ts serves gRPC on the configured port and shuts down cleanly on SIGTERM", async () => {
  await using dir = await tempDir("aetherflow-statesync-main-");
  const port = freePort();
  const main = startMain({
    AETHERFLOW_STATESYNC_PORT: String(port),
    AETHERFLOW_STATESYNC_DATA_DIR: dir.path,
  });
  const { child, log } = main;
  const listening = log.wait("Statesync service listening");
  const client = new pb.StateSyncServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
  try {
    const line = await listening;
    assert.match(line, new RegExp(`127\\.0\\.0\\.1:${port}`));
    const doc = await rpc<pb.Document>((cb) =>
      client.createDocument(
        pb.CreateDocumentRequest.fromPartial({
          actorId: "alice",
          name: "Durable",
          type: pb.DocumentType.DOCUMENT_TYPE_TEXT,
        }),
        cb,
      )
    );
    const applied = await rpc<pb.ApplyOperationResponse>((cb) =>
      client.applyOperation({
        actorId: "alice",
        operation: pb.Operation.fromPartial({
          documentId: doc.id,
          baseVersion: 0,
          sessionId: "s",
          clientOpId: "1",
          components: opToProto([{
            path: ["text"],
            action: { type: "text_insert", offset: 0, text: "kept" },
          }]),
        }),
      }, cb)
    );
    assert.equal(applied.version, 1);
    const stream = client.subscribeDocument(
      pb.SubscribeDocumentRequest.fromPartial({ actorId: "alice", documentId: doc.id }),
    );
    const ended = new Promise<ServiceError | undefined>((resolve) => {
      stream.on("error", (error: ServiceError) => resolve(error));
      stream.on("end", () => resolve(undefined));
      stream.on("data", () => {});
    });
    const subscribed = new Promise<void>((resolve) =>
      stream.once("data", (event: pb.DocumentEvent) => {
        assert.equal(event.type, pb.EventType.EVENT_TYPE_SUBSCRIBED);
        resolve();
      })
    );
    await subscribed;
    const stopped = log.wait("Statesync service stopped");
    child.kill("SIGTERM");
    const endedWith = await ended;
    assert.equal(
      endedWith?.code,
      status.UNAVAILABLE,
      `subscription ended with ${endedWith?.details}`,
    );
    assert.match(await stopped, /stopped/);
    const exit = await child.status;
    assert.equal(exit.code, 0, `exit ${exit.code}; log:\n${log.lines.join("\n")}`);
    // The KV file was closed and holds the acknowledged op.
    const store = await KvDocumentStore.open(kvPathFor(dir.path));
    const manager = new DocumentManager(store);
    try {
      const reopened = await manager.get("alice", doc.id);
      assert.equal(reopened.version, 1);
      assert.deepEqual(reopened.content, { text: "kept" });
    } finally {
      await manager.close();
    }
  } finally {
    client.close();
    await main.stop("SIGKILL");
  }
});
