import assert from "node:assert/strict";
import { credentials, type ServiceError } from "@grpc/grpc-js";
import { freePort, metricSample } from "../kernel/testing.ts";
import * as pb from "../proto/gen/statesync.ts";
import { StateSyncConfigSchema } from "./config.ts";
import { opToProto } from "./convert.ts";
import { startStateSyncService } from "./service.ts";

function rpc<T>(start: (cb: (error: ServiceError | null, response: T) => void) => unknown) {
  return new Promise<T>((resolve, reject) => {
    start((error, response) => (error ? reject(error) : resolve(response)));
  });
}

Deno.test("statesync /metrics counts operations by outcome, conflicts by strategy, gRPC calls and gauges", async () => {
  const config = StateSyncConfigSchema.parse({
    port: 0,
    storage: "memory",
    metricsPort: freePort(),
    subscriber: { maxQueueEvents: 2 },
  });
  await using service = await startStateSyncService(config);
  assert.equal(service.metricsPort, config.metricsPort);
  const client = new pb.StateSyncServiceClient(service.address, credentials.createInsecure());
  const scrape = async () => {
    const response = await fetch(`http://127.0.0.1:${service.metricsPort}/metrics`);
    assert.equal(response.status, 200);
    return await response.text();
  };
  try {
    const before = await scrape();
    const doc = await rpc<pb.Document>((cb) =>
      client.createDocument(
        pb.CreateDocumentRequest.fromPartial({
          actorId: "alice",
          name: "Metered",
          type: pb.DocumentType.DOCUMENT_TYPE_JSON,
          contentJson: "{}",
          conflictStrategy: pb.ConflictStrategy.CONFLICT_STRATEGY_LWW,
        }),
        cb,
      )
    );
    // A subscriber that never reads: the third queued event cuts it off as slow.
    const slow = service.hub.subscribe(doc.id, { userId: "alice" });
    slow.resume({ currentVersion: 0 });
    const apply = (clientOpId: string, baseVersion: number, value: string) =>
      rpc<pb.ApplyOperationResponse>((cb) =>
        client.applyOperation({
          actorId: "alice",
          operation: pb.Operation.fromPartial({
            documentId: doc.id,
            baseVersion,
            sessionId: "s1",
            clientOpId,
            components: opToProto([{ path: ["title"], action: { type: "set", value } }]),
          }),
        }, cb)
      );
    await apply("a", 0, "one"); // applied, v1
    await apply("b", 1, "two"); // applied, v2
    await apply("b", 1, "two"); // duplicate
    const collided = await apply("c", 1, "three"); // concurrent set of the same path: lww conflict
    assert.equal(collided.conflicts.length, 1);
    await assert.rejects(apply("d", 99, "ahead"), { code: 9 }); // version ahead: failed
    await slow.closed;
    const text = await scrape();
    const ops = "aetherflow_statesync_operations_total";
    assert.equal(metricSample(before, ops, { outcome: "applied" }), 0);
    assert.equal(metricSample(text, ops, { outcome: "applied" }), 3);
    assert.equal(metricSample(text, ops, { outcome: "duplicate" }), 1);
    assert.equal(metricSample(text, ops, { outcome: "failed" }), 1);
    assert.equal(
      metricSample(text, "aetherflow_statesync_apply_seconds_count", { outcome: "applied" }),
      3,
    );
    assert.equal(
      metricSample(text, "aetherflow_statesync_conflicts_total", { strategy: "lww" }),
      1,
    );
    assert.equal(
      metricSample(text, "aetherflow_statesync_conflicts_total", { strategy: "merge" }),
      0,
    );
    assert.equal(metricSample(text, "aetherflow_statesync_transforms_total"), 1);
    assert.equal(metricSample(text, "aetherflow_statesync_documents"), 1);
    assert.equal(metricSample(text, "aetherflow_statesync_slow_subscriber_disconnects_total"), 1);
    assert.equal(metricSample(text, "aetherflow_statesync_subscribers"), 0);
    const handled = "aetherflow_grpc_server_handled_total";
    const method = { service: "aetherflow.statesync.v1.StateSyncService" };
    assert.equal(
      metricSample(text, handled, { ...method, method: "ApplyOperation", code: "OK" }),
      4,
    );
    assert.equal(
      metricSample(text, handled, {
        ...method,
        method: "ApplyOperation",
        code: "FAILED_PRECONDITION",
      }),
      1,
    );
    assert.equal(
      metricSample(text, handled, { ...method, method: "CreateDocument", code: "OK" }),
      1,
    );
    assert.match(text, /^process_resident_memory_bytes \d/m);
    // No ids as label values.
    assert.ok(!text.includes(doc.id), "a document id leaked into a label");
    assert.ok(!text.includes("alice"), "a user id leaked into a label");
    const health = await fetch(`http://127.0.0.1:${service.metricsPort}/health`);
    assert.equal(health.status, 200);
    await health.body?.cancel();
  } finally {
    client.close();
  }
});

Deno.test("statesync metricsPort 0 serves no metrics endpoint", async () => {
  const config = StateSyncConfigSchema.parse({ port: 0, storage: "memory" });
  await using service = await startStateSyncService(config);
  assert.equal(service.metricsPort, null);
});
