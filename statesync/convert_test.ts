import assert from "node:assert/strict";
import { newId } from "../kernel/mod.ts";
import type { Op } from "./json0/types.ts";
import * as pb from "../proto/gen/statesync.ts";
import {
  documentTypeFromProto,
  eventToProto,
  jsonFromText,
  opFromProto,
  opToProto,
  pathFromProto,
  sharedEventProto,
  strategyFromProto,
} from "./convert.ts";
import type { DocEvent } from "./events.ts";

const EVERY_ACTION: Op = [
  { path: ["a", 0, "b"], action: { type: "set", value: { x: [1, "two", null, true] } } },
  { path: ["gone"], action: { type: "delete" } },
  { path: ["text"], action: { type: "text_insert", offset: 3, text: "héllo 👋" } },
  { path: ["text"], action: { type: "text_delete", offset: 1, length: 2 } },
  { path: ["list"], action: { type: "list_insert", index: 2, value: "v" } },
  { path: ["list"], action: { type: "list_delete", index: 0 } },
  { path: ["list"], action: { type: "list_move", from: 1, to: 4 } },
  { path: ["n"], action: { type: "increment", delta: -2.5 } },
];

Deno.test("opToProto() and opFromProto() round-trip every json0 action through the wire", () => {
  const components = opToProto(EVERY_ACTION);
  const wire = pb.Operation.encode(pb.Operation.fromPartial({ components })).finish();
  const decoded = pb.Operation.decode(wire).components;
  assert.deepEqual(opFromProto(decoded, "operation.components"), EVERY_ACTION);
});

Deno.test("opFromProto() names the bad field for a missing action, bad JSON or a bad path", () => {
  assert.throws(
    () => opFromProto([{ path: [], action: undefined }], "operation.components"),
    { name: "TypeError", message: "Invalid operation.components[0]: expected an action" },
  );
  assert.throws(
    () =>
      opFromProto(
        [{ path: [], action: { $case: "set", value: { valueJson: "{nope" } } }],
        "operation.components",
      ),
    { name: "TypeError", message: /operation\.components\[0\]\.set\.value_json: not valid JSON/ },
  );
  assert.throws(
    () =>
      opFromProto(
        [{ path: [{ element: undefined }], action: { $case: "delete", value: {} } }],
        "operation.components",
      ),
    { name: "TypeError", message: /operation\.components\[0\]\.path\[0\]/ },
  );
  assert.throws(
    () =>
      opFromProto(
        [{ path: [], action: { $case: "textInsert", value: { offset: 0, text: "" } } }],
        "operation.components",
      ),
    TypeError,
  );
});

Deno.test("enum and JSON converters refuse unspecified values with a TypeError naming the field", () => {
  assert.throws(
    () => documentTypeFromProto(pb.DocumentType.DOCUMENT_TYPE_UNSPECIFIED),
    { name: "TypeError", message: /Invalid type/ },
  );
  assert.equal(documentTypeFromProto(pb.DocumentType.DOCUMENT_TYPE_BOARD), "board");
  assert.equal(strategyFromProto(pb.ConflictStrategy.CONFLICT_STRATEGY_LWW), "lww");
  assert.throws(() => jsonFromText("", "content_json"), { message: /content_json/ });
  assert.deepEqual(pathFromProto([{ element: { $case: "index", value: 2 } }], "path"), [2]);
});

Deno.test("eventToProto() carries the event's payload and type", () => {
  const documentId = newId();
  const lockEvent = eventToProto({
    type: "lock_acquired",
    documentId,
    version: 4,
    timestamp: 9,
    userId: "alice",
    lock: {
      id: newId(),
      documentId,
      path: ["a", 1],
      ownerId: "alice",
      sessionId: "s",
      acquiredAt: 1,
      expiresAt: 2,
      fencingToken: 3,
    },
  });
  assert.equal(lockEvent.type, pb.EventType.EVENT_TYPE_LOCK_ACQUIRED);
  assert.equal(lockEvent.payload?.$case, "lock");
  const resync = eventToProto({
    type: "resync_required",
    documentId,
    version: 1,
    timestamp: 1,
    reason: "gone",
  });
  assert.deepEqual(resync.payload, { $case: "reason", value: "gone" });
  assert.equal(resync.userId, "");
});

Deno.test("sharedEventProto converts an event once for all its subscribers", () => {
  const event: DocEvent = {
    type: "operation_applied",
    documentId: "d",
    version: 3,
    timestamp: 1,
    userId: "u",
  };
  const first = sharedEventProto(event);
  assert.equal(sharedEventProto(event), first);
  assert.deepEqual(first, eventToProto(event));
  assert.notEqual(sharedEventProto({ ...event }), first);
});
