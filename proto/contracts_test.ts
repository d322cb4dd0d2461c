import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { loadSync } from "@grpc/proto-loader";
import { SessionServiceService } from "./gen/session.ts";
import { StateSyncServiceService } from "./gen/statesync.ts";
import { HealthService } from "./gen/health.ts";
import { staleFiles } from "./generate.ts";
import { needs } from "../kernel/testing.ts";

const protoDir = fileURLToPath(new URL(".", import.meta.url));

function methodsOf(file: string, service: string): Record<string, { stream: string }> {
  const definition = loadSync(file, { includeDirs: [protoDir] });
  const methods = definition[service];
  assert.ok(methods, `${service} missing from ${file}`);
  return Object.fromEntries(
    Object.entries(methods).map(([name, method]) => {
      const m = method as { requestStream: boolean; responseStream: boolean };
      const stream = m.requestStream && m.responseStream
        ? "bidi"
        : m.responseStream
        ? "server"
        : m.requestStream
        ? "client"
        : "unary";
      return [name, { stream }];
    }),
  );
}

Deno.test("session.proto has every RPC of DESIGN.md section 4 in package aetherflow.session.v1", () => {
  const methods = methodsOf("session.proto", "aetherflow.session.v1.SessionService");
  for (
    const rpc of [
      "CreateSession",
      "GetSession",
      "UpdateSession",
      "DeleteSession",
      "ListSessions",
      "Heartbeat",
      "RotateToken",
    ]
  ) {
    assert.equal(methods[rpc]?.stream, "unary", rpc);
  }
});

Deno.test("statesync.proto has every RPC of DESIGN.md section 5, with streaming where needed", () => {
  const methods = methodsOf("statesync.proto", "aetherflow.statesync.v1.StateSyncService");
  const expected: Record<string, string> = {
    CreateDocument: "unary",
    GetDocument: "unary",
    UpdateDocument: "unary",
    DeleteDocument: "unary",
    ListDocuments: "unary",
    ApplyOperation: "unary",
    SubmitOperations: "bidi",
    GetOperationHistory: "unary",
    SubscribeDocument: "server",
    UnsubscribeDocument: "unary",
    AcquireLock: "unary",
    ReleaseLock: "unary",
    IsLocked: "unary",
    GetStats: "unary",
    ResolveConflict: "unary",
    ListConflicts: "unary",
    UpdatePresence: "unary",
    GetPresence: "unary",
  };
  for (const [rpc, stream] of Object.entries(expected)) {
    assert.equal(methods[rpc]?.stream, stream, rpc);
  }
});

Deno.test("generated service definitions match the .proto files method for method", () => {
  const cases = [
    ["session.proto", "aetherflow.session.v1.SessionService", SessionServiceService],
    ["statesync.proto", "aetherflow.statesync.v1.StateSyncService", StateSyncServiceService],
    ["health.proto", "grpc.health.v1.Health", HealthService],
  ] as const;
  for (const [file, service, generated] of cases) {
    const fromProto = Object.keys(methodsOf(file, service)).map((m) => `/${service}/${m}`).sort();
    const fromGen = Object.values(generated).map((m) => m.path).sort();
    assert.deepEqual(fromGen, fromProto, service);
  }
});

const generator = needs("protoc", "npm");
Deno.test({
  name: "proto/gen is what the pinned generator produces from the .proto files" + generator.note,
  ignore: generator.ignore,
  fn: async () => {
    assert.deepEqual(await staleFiles(), [], "run `deno task proto` and commit proto/gen");
  },
});
