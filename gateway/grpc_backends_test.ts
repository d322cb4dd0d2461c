import assert from "node:assert/strict";
import { Server, ServerCredentials, status } from "@grpc/grpc-js";
import { AppError, createMetricsRegistry, GrpcClientMetrics } from "../kernel/mod.ts";
import { freePort } from "../kernel/testing.ts";
import { SessionConfigSchema, startSessionService } from "../session/mod.ts";
import { startStateSyncService, StateSyncConfigSchema } from "../statesync/mod.ts";
import {
  type Session,
  type SessionServiceServer,
  SessionServiceService,
  SessionState,
} from "../proto/gen/session.ts";
import {
  type DocumentEvent,
  DocumentType,
  EventType,
  type StateSyncServiceServer,
  StateSyncServiceService,
  type SubmitBatch,
} from "../proto/gen/statesync.ts";
import { BreakerRegistry } from "./breaker.ts";
import { createGrpcBackends } from "./grpc_backends.ts";
import { tcpTarget } from "./_testing.ts";

const session = (id: string): Session => ({
  id,
  userId: "u",
  connectionId: "",
  clientIp: "",
  clientPort: 0,
  serverAddress: "",
  state: SessionState.SESSION_STATE_ACTIVE,
  createdAt: 0,
  lastActiveAt: 0,
  expiresAt: 0,
  metadata: {},
  stats: undefined,
});

/** A real grpc-js server with scripted session behaviour. */
async function scriptedSessionServer() {
  const calls = { getSession: 0, createSession: 0, listSessions: 0 };
  let deadlineSeen: number | undefined;
  let metadataSeen: string | undefined;
  const unavailable = { code: status.UNAVAILABLE, details: "scripted outage" };
  const server = new Server();
  const unimplemented = { code: status.UNIMPLEMENTED, details: "not scripted" };
  const impl: SessionServiceServer = {
    getSession(_call, cb) {
      calls.getSession++;
      if (calls.getSession <= 2) cb(unavailable);
      else cb(null, session("s1"));
    },
    createSession(_call, cb) {
      calls.createSession++;
      cb(unavailable);
    },
    listSessions(call, cb) {
      calls.listSessions++;
      const deadline = call.getDeadline();
      deadlineSeen = deadline instanceof Date ? deadline.getTime() : deadline;
      metadataSeen = String(call.metadata.get("x-request-id")[0]);
      cb(null, { sessions: [], nextPageToken: "", totalCount: 0 });
    },
    updateSession: (_c, cb) => cb(unimplemented),
    deleteSession: (_c, cb) => cb(unimplemented),
    heartbeat: (_c, cb) => cb(unimplemented),
    rotateToken: (_c, cb) => cb(unimplemented),
  };
  server.addService(SessionServiceService, impl);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      ServerCredentials.createInsecure(),
      (e, p) => e ? reject(e) : resolve(p),
    )
  );
  return {
    address: `127.0.0.1:${port}`,
    calls,
    get deadlineSeen() {
      return deadlineSeen;
    },
    get metadataSeen() {
      return metadataSeen;
    },
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

Deno.test("grpc backends: real session and statesync services, health, rotation, submit and subscribe streams", async () => {
  await using sessionService = await startSessionService(
    SessionConfigSchema.parse({ port: 0, storage: "memory" }),
  );
  await using statesyncService = await startStateSyncService(
    StateSyncConfigSchema.parse({ port: 0, storage: "memory" }),
  );
  const backends = await createGrpcBackends({
    session: tcpTarget(sessionService.address),
    statesync: tcpTarget(statesyncService.address),
    breakers: new BreakerRegistry(),
  });
  try {
    const health = await backends.health();
    assert.equal(health.session!.status, "SERVING");
    assert.equal(health.statesync!.status, "SERVING");

    const created = await backends.session.createSession({
      userId: "user-1",
      connectionId: "",
      clientIp: "",
      clientPort: 0,
      serverAddress: "",
      ttlSeconds: 60,
      metadata: {},
    });
    const rotated = await backends.session.rotateToken({ token: created.token });
    assert.notEqual(rotated.token, created.token);
    await assert.rejects(
      backends.session.rotateToken({ token: created.token }),
      (e: AppError) => e.status === "UNAUTHENTICATED",
    );

    const doc = await backends.statesync.createDocument({
      actorId: "user-1",
      name: "d",
      type: DocumentType.DOCUMENT_TYPE_TEXT,
      contentJson: "",
      permissions: undefined,
      metadata: {},
      conflictStrategy: 0,
    });
    const events: DocumentEvent[] = [];
    let live!: () => void;
    const subscribed = new Promise<void>((resolve) => live = resolve);
    let applied!: () => void;
    const gotOp = new Promise<void>((resolve) => applied = resolve);
    const sub = backends.statesync.subscribeDocument({
      actorId: "user-1",
      documentId: doc.id,
      sessionId: "",
      subscriberId: "sub-1",
    }, {
      onData(event) {
        events.push(event);
        if (event.type === EventType.EVENT_TYPE_SUBSCRIBED) live();
        if (event.type === EventType.EVENT_TYPE_OPERATION_APPLIED) applied();
      },
      onError: () => {},
      onEnd: () => {},
    });
    await subscribed;
    let result!: (r: unknown) => void;
    const gotResult = new Promise((resolve) => result = resolve);
    const submit = backends.statesync.submitOperations({
      onData: (r) => result(r),
      onError: () => {},
      onEnd: () => {},
    });
    submit.send({
      requestId: "r1",
      apply: {
        actorId: "user-1",
        operation: {
          id: "",
          documentId: doc.id,
          baseVersion: 0,
          version: 0,
          authorId: "user-1",
          sessionId: "session-1",
          clientOpId: "c1",
          timestamp: 0,
          components: [{
            path: [{ element: { $case: "key", value: "text" } }],
            action: { $case: "textInsert", value: { offset: 0, text: "hi" } },
          }],
        },
      },
    });
    const outcome = await gotResult as { requestId: string; outcome: { $case: string } };
    assert.equal(outcome.requestId, "r1");
    assert.equal(outcome.outcome.$case, "applied", JSON.stringify(outcome));
    await gotOp;
    assert.ok(
      events.some((e) => e.type === EventType.EVENT_TYPE_OPERATION_APPLIED && e.version === 1),
    );
    submit.cancel();
    sub.cancel();
  } finally {
    await backends.close();
  }
});

Deno.test("grpc backends: idempotent calls retry UNAVAILABLE, others do not; deadline and request id reach the server", async () => {
  const server = await scriptedSessionServer();
  const registry = createMetricsRegistry({ processMetrics: false });
  const backends = await createGrpcBackends({
    session: tcpTarget(server.address),
    statesync: tcpTarget(server.address),
    breakers: new BreakerRegistry(),
    retryBaseMs: 1,
    metrics: new GrpcClientMetrics(registry),
  });
  try {
    const got = await backends.session.getSession({
      selector: { $case: "sessionId", value: "s1" },
    });
    assert.equal(got.id, "s1");
    assert.equal(server.calls.getSession, 3, "two retries after two UNAVAILABLE");
    const exposition = await registry.metrics();
    assert.match(
      exposition,
      /aetherflow_grpc_client_handled_total\{service="aetherflow.session.v1.SessionService",method="GetSession",code="UNAVAILABLE"\} 2/,
    );
    assert.match(exposition, /method="GetSession",code="OK"\} 1/);
    await assert.rejects(
      backends.session.createSession({
        userId: "u",
        connectionId: "",
        clientIp: "",
        clientPort: 0,
        serverAddress: "",
        ttlSeconds: 0,
        metadata: {},
      }),
      (e: AppError) => e.status === "UNAVAILABLE",
    );
    assert.equal(server.calls.createSession, 1, "non-idempotent: no retry");
    const deadline = Date.now() + 1_500;
    await backends.session.listSessions({
      userId: "",
      state: 0,
      createdAfter: 0,
      createdBefore: 0,
      pageSize: 1,
      pageToken: "",
    }, { deadline, requestId: "req-42" });
    assert.ok(
      Math.abs(server.deadlineSeen! - deadline) < 50,
      `${server.deadlineSeen} ~ ${deadline}`,
    );
    assert.equal(server.metadataSeen, "req-42");
    await assert.rejects(
      backends.session.listSessions({
        userId: "",
        state: 0,
        createdAfter: 0,
        createdBefore: 0,
        pageSize: 1,
        pageToken: "",
      }, { deadline: Date.now() - 1 }),
      (e: AppError) => e.status === "DEADLINE_EXCEEDED",
    );
    const health = await backends.health();
    assert.equal(
      health.session!.status,
      "SERVING",
      "no health service: UNIMPLEMENTED still proves it is up",
    );
  } finally {
    await backends.close();
    await server.close();
  }
});

Deno.test("grpc backends: the breaker opens under repeated UNAVAILABLE and fails fast without calling", async () => {
  const down = `127.0.0.1:${freePort()}`; // nothing listens here
  const breakers = new BreakerRegistry();
  const backends = await createGrpcBackends({
    session: { ...tcpTarget(down), retries: 0 },
    statesync: { ...tcpTarget(down), retries: 0 },
    breakers,
  });
  try {
    const health = await backends.health(500);
    assert.equal(health.statesync!.status, "UNREACHABLE");
    let fastFails = 0;
    for (let i = 0; i < 30; i++) {
      try {
        await backends.statesync.getStats({});
      } catch (error) {
        assert.equal((error as AppError).status, "UNAVAILABLE");
        if (/breaker open/.test((error as AppError).message)) fastFails++;
      }
    }
    assert.ok(fastFails > 0);
    const stats = breakers.stats().find((s) => s.name === "statesync/GetStats")!;
    assert.equal(stats.state, "open");
    assert.equal(stats.rejected, fastFails);
  } finally {
    await backends.close();
  }
});

/** A gRPC server answering statesync calls with `impl`, and gateway backends pointed at it. */
async function scriptedStatesync(impl: Partial<StateSyncServiceServer>) {
  const server = new Server();
  server.addService(StateSyncServiceService, impl as StateSyncServiceServer);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      ServerCredentials.createInsecure(),
      (e, p) => e ? reject(e) : resolve(p),
    )
  );
  const backends = await createGrpcBackends({
    session: tcpTarget(`127.0.0.1:${port}`),
    statesync: tcpTarget(`127.0.0.1:${port}`),
    breakers: new BreakerRegistry(),
  });
  return { server, backends };
}

Deno.test("grpc backends: ops sent in one event-loop turn travel as one SubmitOperationBatches message, at most 256 per message", async () => {
  const batchSizes: number[] = [];
  const impl: Partial<StateSyncServiceServer> = {
    submitOperationBatches(call) {
      call.on("data", (batch: SubmitBatch) => {
        batchSizes.push(batch.requests.length);
        call.write({
          results: batch.requests.map((r) => ({
            requestId: r.requestId,
            outcome: { $case: "error", value: { code: 3, message: `seen ${r.requestId}` } },
          })),
        });
      });
      call.on("end", () => call.end());
    },
  };
  const { server, backends } = await scriptedStatesync(impl);
  try {
    const results: string[] = [];
    let expected = 0;
    let done!: () => void;
    let got = new Promise<void>((resolve) => done = resolve);
    const submit = backends.statesync.submitOperations({
      onData: (r) => {
        results.push(r.requestId);
        if (results.length === expected) done();
      },
      onError: () => {},
      onEnd: () => {},
    });
    const request = (requestId: string) => ({ requestId, apply: undefined });
    expected = 5;
    for (let i = 0; i < 5; i++) submit.send(request(`a${i}`));
    await got;
    got = new Promise<void>((resolve) => done = resolve);
    expected = 6;
    submit.send(request("b0"));
    await got;
    assert.deepEqual(results, ["a0", "a1", "a2", "a3", "a4", "b0"]);
    assert.deepEqual(batchSizes, [5, 1]);
    // A full batch (256 requests) goes at once; the rest waits for the timer as usual.
    got = new Promise<void>((resolve) => done = resolve);
    expected = 6 + 300;
    for (let i = 0; i < 300; i++) submit.send(request(`c${i}`));
    await got;
    assert.deepEqual(batchSizes, [5, 1, 256, 44]);
    assert.deepEqual(results.slice(6), Array.from({ length: 300 }, (_, i) => `c${i}`));
    submit.cancel();
  } finally {
    await backends.close();
    server.forceShutdown();
  }
});

Deno.test("grpc backends: a statesync without SubscribeDocuments gets one SubscribeDocument stream per document", async () => {
  const requested: string[] = [];
  const impl: Partial<StateSyncServiceServer> = {
    subscribeDocument(call) {
      requested.push(call.request.documentId);
      call.write({
        type: EventType.EVENT_TYPE_SUBSCRIBED,
        documentId: call.request.documentId,
        version: 7,
        timestamp: 0,
        userId: "",
        payload: undefined,
      });
    },
  };
  const { server, backends } = await scriptedStatesync(impl);
  try {
    const subscribe = (documentId: string) =>
      new Promise<DocumentEvent>((resolve, reject) => {
        backends.statesync.subscribeDocument(
          { actorId: "u", documentId, sessionId: "", subscriberId: "s" },
          { onData: resolve, onError: reject, onEnd: () => reject(new Error("ended")) },
        );
      });
    // The first one meets UNIMPLEMENTED on the shared stream and moves to its own stream.
    assert.equal((await subscribe("doc-1")).documentId, "doc-1");
    assert.equal((await subscribe("doc-2")).documentId, "doc-2");
    assert.deepEqual(requested, ["doc-1", "doc-2"]);
  } finally {
    await backends.close();
    server.forceShutdown();
  }
});
