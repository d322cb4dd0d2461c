import assert from "node:assert/strict";
import { freePort, tempDir } from "../kernel/testing.ts";
import { SessionConfigSchema, startSessionService } from "../session/mod.ts";
import { startStateSyncService, StateSyncConfigSchema } from "../statesync/mod.ts";
import { createGateway } from "./app.ts";
import { BreakerRegistry } from "./breaker.ts";
import { createGrpcBackends } from "./grpc_backends.ts";
import { serveGateway } from "./serve.ts";
import { type WsMessage, WsTestClient } from "./testing.ts";
import { sessionToken, tcpTarget, testConfig, testUsers } from "./_testing.ts";

/** `promise`, or a failure naming `what` after 10 s. */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out waiting for ${what}`)), 10_000);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("ws over real gRPC: after statesync restarts, every document feed re-subscribes on a new shared stream and loses nothing", async () => {
  await using dir = await tempDir("aetherflow-ws-grpc-");
  await using session = await startSessionService(
    SessionConfigSchema.parse({ port: 0, storage: "memory" }),
  );
  const statesyncConfig = StateSyncConfigSchema.parse({
    port: freePort(),
    storage: "kv",
    dataDir: dir.path,
  });
  let statesync = await startStateSyncService(statesyncConfig);
  const backends = await createGrpcBackends({
    session: tcpTarget(session.address),
    statesync: tcpTarget(statesync.address),
    breakers: new BreakerRegistry(),
    retryBaseMs: 10,
  });
  const gateway = await createGateway({ config: testConfig(), backends, users: await testUsers() });
  const server = serveGateway(gateway, { port: 0 });
  try {
    const token = await sessionToken(backends.session, gateway.tokens);
    await using client = await WsTestClient.connect(`ws://127.0.0.1:${server.port}/ws`);
    assert.equal((await client.request({ type: "auth", token })).type, "reply");

    const docs: string[] = [];
    for (const name of ["a", "b"]) {
      const doc = await backends.statesync.createDocument({
        actorId: "id-alice",
        name,
        type: 1,
        contentJson: "",
        permissions: undefined,
        metadata: {},
        conflictStrategy: 0,
      });
      docs.push(doc.id);
      const reply = await client.request({ type: "subscribe", document_id: doc.id });
      assert.equal(reply.type, "reply", JSON.stringify(reply));
    }
    // The client op id makes a resend after an error apply at most once.
    const op = (documentId: string, base: number, text: string) =>
      client.request({
        type: "op",
        document_id: documentId,
        base_version: base,
        client_op_id: `${documentId}-${text}`,
        components: [{ type: "text_insert", path: ["text"], offset: 0, text }],
      });
    const event = (documentId: string, version: number) =>
      within(
        client.next((m: WsMessage) =>
          m.event === "operation_applied" && m.document_id === documentId && m.version === version
        ),
        `version ${version} of ${documentId}`,
      );
    for (const doc of docs) assert.equal((await op(doc, 0, "1")).type, "ack");
    for (const doc of docs) await event(doc, 1);

    // Statesync restarts: the shared stream is lost; ops are applied while it is down for the
    // gateway's feeds (acked through the new connection), then live ones follow.
    await statesync.shutdown();
    statesync = await startStateSyncService(statesyncConfig);
    for (const doc of docs) {
      // The first op may meet the old connection's failure (UNAVAILABLE): resend, a few times.
      let reply = await op(doc, 1, "2");
      for (let resend = 0; reply.type !== "ack" && resend < 20; resend++) {
        reply = await op(doc, 1, "2");
      }
      assert.equal(reply.type, "ack", JSON.stringify(reply));
    }
    for (const doc of docs) await event(doc, 2);
    for (const doc of docs) assert.equal((await op(doc, 2, "3")).type, "ack");
    for (const doc of docs) await event(doc, 3);
    const versions = client.pending.filter((m) => m.event === "operation_applied");
    assert.deepEqual(versions, [], "no duplicate events");
  } finally {
    await server.shutdown();
    await backends.close();
    await statesync.shutdown();
  }
});
