import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import type * as pb from "../proto/gen/statesync.ts";
import { serveSubscriptionMux } from "./subscription_mux.ts";

/** The parts of a grpc-js duplex call the mux uses; `written` collects what it sends. */
function fakeCall() {
  const call = new EventEmitter() as EventEmitter & {
    cancelled: boolean;
    written: pb.DocumentEventBatch[];
    write(batch: pb.DocumentEventBatch): boolean;
    end(): void;
  };
  call.cancelled = false;
  call.written = [];
  call.write = (batch) => (call.written.push(batch), true);
  call.end = () => {};
  return call;
}

Deno.test("a subscribe beyond the per-call limit ends alone with RESOURCE_EXHAUSTED; the open ones go on", async () => {
  const call = fakeCall();
  const started: number[] = [];
  const mux = serveSubscriptionMux(
    call as unknown as ServerDuplexStream<pb.SubscriptionControl, pb.DocumentEventBatch>,
    (request, output) => {
      started.push(request.fromVersion ?? 0);
      output.write(
        { documentId: request.documentId, version: request.fromVersion ?? 0 } as pb.DocumentEvent,
      );
      return new Promise((resolve) => output.onCancel(() => resolve(undefined)));
    },
    2,
  );
  for (const key of [1, 2, 3]) {
    call.emit("data", {
      key,
      action: { $case: "subscribe", value: { documentId: `d${key}`, fromVersion: key } },
    });
  }
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(started, [1, 2]);
  const updates = call.written.flatMap((batch) => batch.updates);
  assert.deepEqual(updates.map((u) => [u.key, u.events.length, u.ended?.code]), [
    [1, 1, undefined],
    [2, 1, undefined],
    [3, 0, 8], // RESOURCE_EXHAUSTED
  ]);
  assert.match(updates[2]!.ended!.message, /At most 2 subscriptions/);
  // Unsubscribing frees a place.
  call.emit("data", { key: 1, action: { $case: "unsubscribe", value: true } });
  call.emit("data", {
    key: 4,
    action: { $case: "subscribe", value: { documentId: "d4", fromVersion: 4 } },
  });
  assert.deepEqual(started, [1, 2, 4]);
  call.emit("end"); // the client ends the call: every subscription ends
  await mux.finished;
});
