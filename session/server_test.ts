import assert from "node:assert/strict";
import { credentials, status } from "@grpc/grpc-js";
import { newId } from "../kernel/mod.ts";
import { tempDir } from "../kernel/testing.ts";
import { SessionState } from "../proto/gen/session.ts";
import { SessionClient } from "./client.ts";
import { SessionConfigSchema } from "./config.ts";
import {
  type HealthCheckResponse,
  HealthCheckResponse_ServingStatus as Serving,
  HealthClient,
} from "../proto/gen/health.ts";
import { KvSessionStore } from "./kv_store.ts";
import { SESSION_SERVICE_NAME } from "./server.ts";
import { kvPathFor, startSessionService } from "./service.ts";

async function startKvService(dataDir: string, overrides: Record<string, unknown> = {}) {
  const config = SessionConfigSchema.parse({
    port: 0,
    dataDir,
    maxTtlSeconds: 3600,
    metadata: { maxEntries: 4, maxTotalBytes: 256 },
    ...overrides,
  });
  return await startSessionService(config);
}

async function expectStatus(promise: Promise<unknown>, code: number, field?: string) {
  await assert.rejects(promise, (error: unknown) => {
    const e = error as { code: number; details: string };
    assert.equal(e.code, code, `got ${status[e.code]}: ${e.details}`);
    if (field !== undefined) assert.ok(e.details.includes(field), `"${e.details}" names ${field}`);
    return true;
  });
}

Deno.test("gRPC over TCP: create, look up, update, heartbeat, list, rotate and delete", async () => {
  await using dir = await tempDir("aetherflow-session-");
  await using service = await startKvService(dir.path);
  using client = new SessionClient(service.address);
  await client.ready();
  const connectionId = newId();
  const created = await client.createSession({
    userId: "alice",
    connectionId,
    clientIp: "2001:db8::1",
    clientPort: 5555,
    serverAddress: "gw-1:8080",
    ttlSeconds: 600,
    metadata: { device: "tablet" },
  });
  const session = created.session!;
  assert.match(created.token, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(session.state, SessionState.SESSION_STATE_ACTIVE);
  assert.equal(session.expiresAt - session.createdAt, 600_000);
  assert.deepEqual(session.metadata, { device: "tablet" });

  const byId = await client.getSession({ selector: { $case: "sessionId", value: session.id } });
  assert.deepEqual(byId, session);
  const byConnection = await client.getSession({
    selector: { $case: "connectionId", value: connectionId },
  });
  assert.equal(byConnection.id, session.id);
  const byToken = await client.getSession({ selector: { $case: "token", value: created.token } });
  assert.equal(byToken.id, session.id);

  const updated = await client.updateSession({
    sessionId: session.id,
    updateMask: ["state", "stats"],
    state: SessionState.SESSION_STATE_IDLE,
    stats: { messagesIn: 1, messagesOut: 2, bytesIn: 3, bytesOut: 4, operations: 5 },
    metadata: { ignored: "not in mask" },
  });
  assert.equal(updated.state, SessionState.SESSION_STATE_IDLE);
  assert.equal(updated.stats?.operations, 5);
  assert.deepEqual(updated.metadata, { device: "tablet" });

  const beat = await client.heartbeat({ sessionId: session.id, ttlSeconds: 1200 });
  assert.ok(beat.session!.expiresAt >= session.expiresAt + 600_000 - 5_000);

  await client.createSession({ userId: "bob" });
  const listed = await client.listSessions({ userId: "alice" });
  assert.deepEqual(listed.sessions.map((s) => s.id), [session.id]);
  assert.equal(listed.totalCount, 1);
  assert.equal((await client.listSessions({})).totalCount, 2);
  const idle = await client.listSessions({ state: SessionState.SESSION_STATE_IDLE });
  assert.deepEqual(idle.sessions.map((s) => s.id), [session.id]);

  const rotated = await client.rotateToken({ token: created.token });
  assert.notEqual(rotated.token, created.token);
  await expectStatus(
    client.getSession({ selector: { $case: "token", value: created.token } }),
    status.NOT_FOUND,
  );
  await expectStatus(client.rotateToken({ token: created.token }), status.UNAUTHENTICATED);
  const ended = await client.getSession({ selector: { $case: "sessionId", value: session.id } });
  assert.equal(ended.state, SessionState.SESSION_STATE_TERMINATED);
  await expectStatus(client.heartbeat({ sessionId: session.id }), status.FAILED_PRECONDITION);

  await client.deleteSession({ sessionId: session.id });
  await expectStatus(client.deleteSession({ sessionId: session.id }), status.NOT_FOUND);
  await expectStatus(
    client.getSession({ selector: { $case: "sessionId", value: session.id } }),
    status.NOT_FOUND,
  );
});

Deno.test("gRPC: bad input is INVALID_ARGUMENT naming the field, unknown ids NOT_FOUND", async () => {
  await using dir = await tempDir("aetherflow-session-");
  await using service = await startKvService(dir.path, {
    maxSessionsPerUser: 1,
    userLimitPolicy: "refuse",
  });
  using client = new SessionClient(service.address);
  const { session } = await client.createSession({ userId: "owner" });
  const id = session!.id;
  const INVALID = status.INVALID_ARGUMENT;
  const cases: [string, () => Promise<unknown>, number, string?][] = [
    ["missing user id", () => client.createSession({}), INVALID, "user_id"],
    [
      "malformed connection id",
      () => client.createSession({ userId: "u", connectionId: "x" }),
      INVALID,
      "connection_id",
    ],
    [
      "v4 uuid as connection id",
      () => client.createSession({ userId: "u", connectionId: crypto.randomUUID() }),
      INVALID,
      "connection_id",
    ],
    [
      "negative ttl wrapped into uint32 (-1 >>> 0)",
      () => client.createSession({ userId: "u", ttlSeconds: -1 >>> 0 }),
      INVALID,
      "ttl_seconds",
    ],
    [
      "ttl above maximum",
      () => client.createSession({ userId: "u", ttlSeconds: 3601 }),
      INVALID,
      "ttl_seconds",
    ],
    [
      "bad client ip",
      () => client.createSession({ userId: "u", clientIp: "not-an-ip" }),
      INVALID,
      "client_ip",
    ],
    [
      "port out of range",
      () => client.createSession({ userId: "u", clientPort: 70_000 }),
      INVALID,
      "client_port",
    ],
    [
      "too many metadata entries",
      () =>
        client.createSession({ userId: "u", metadata: { a: "1", b: "2", c: "3", d: "4", e: "5" } }),
      INVALID,
      "metadata",
    ],
    [
      "oversized metadata",
      () => client.createSession({ userId: "u", metadata: { big: "x".repeat(300) } }),
      INVALID,
      "metadata",
    ],
    ["get without selector", () => client.getSession({ selector: undefined }), INVALID, "selector"],
    [
      "get by malformed id",
      () => client.getSession({ selector: { $case: "sessionId", value: "123" } }),
      INVALID,
      "session_id",
    ],
    [
      "get by empty token",
      () => client.getSession({ selector: { $case: "token", value: "" } }),
      INVALID,
      "token",
    ],
    [
      "get by malformed token",
      () => client.getSession({ selector: { $case: "token", value: "abc" } }),
      INVALID,
      "token",
    ],
    [
      "get unknown id",
      () => client.getSession({ selector: { $case: "sessionId", value: newId() } }),
      status.NOT_FOUND,
    ],
    [
      "get unknown connection",
      () => client.getSession({ selector: { $case: "connectionId", value: newId() } }),
      status.NOT_FOUND,
    ],
    [
      "get unknown token",
      () => client.getSession({ selector: { $case: "token", value: "A".repeat(43) } }),
      status.NOT_FOUND,
    ],
    [
      "update without id",
      () => client.updateSession({ sessionId: "", updateMask: ["state"] }),
      INVALID,
      "session_id",
    ],
    ["update without mask", () => client.updateSession({ sessionId: id }), INVALID, "update_mask"],
    [
      "update unknown mask field",
      () => client.updateSession({ sessionId: id, updateMask: ["user_id"] }),
      INVALID,
      "update_mask",
    ],
    [
      "update state unspecified",
      () => client.updateSession({ sessionId: id, updateMask: ["state"] }),
      INVALID,
      "state",
    ],
    [
      "update state terminated",
      () =>
        client.updateSession({
          sessionId: id,
          updateMask: ["state"],
          state: SessionState.SESSION_STATE_TERMINATED,
        }),
      INVALID,
      "state",
    ],
    [
      "update unknown enum value",
      () =>
        client.updateSession({ sessionId: id, updateMask: ["state"], state: 42 as SessionState }),
      INVALID,
      "state",
    ],
    [
      "update bad connection id",
      () =>
        client.updateSession({
          sessionId: id,
          updateMask: ["connection_id"],
          connectionId: "nope",
        }),
      INVALID,
      "connection_id",
    ],
    [
      "update unknown id",
      () => client.updateSession({ sessionId: newId(), updateMask: ["state"], state: 2 }),
      status.NOT_FOUND,
    ],
    [
      "delete malformed id",
      () => client.deleteSession({ sessionId: "zzz" }),
      INVALID,
      "session_id",
    ],
    ["delete unknown id", () => client.deleteSession({ sessionId: newId() }), status.NOT_FOUND],
    ["heartbeat missing id", () => client.heartbeat({ sessionId: "" }), INVALID, "session_id"],
    [
      "heartbeat huge ttl",
      () => client.heartbeat({ sessionId: id, ttlSeconds: 4_000_000_000 }),
      INVALID,
      "ttl_seconds",
    ],
    ["heartbeat unknown id", () => client.heartbeat({ sessionId: newId() }), status.NOT_FOUND],
    ["list page size too big", () => client.listSessions({ pageSize: 5000 }), INVALID, "page_size"],
    ["list bad page token", () => client.listSessions({ pageToken: "!!" }), INVALID, "page_token"],
    ["list bad state", () => client.listSessions({ state: 9 as SessionState }), INVALID, "state"],
    ["rotate missing token", () => client.rotateToken({ token: "" }), INVALID, "token"],
    ["rotate unknown token", () => client.rotateToken({ token: "B".repeat(43) }), status.NOT_FOUND],
    ["per-user limit", () => client.createSession({ userId: "owner" }), status.RESOURCE_EXHAUSTED],
  ];
  for (const [name, call, code, field] of cases) {
    await assert.rejects(call(), (error: unknown) => {
      const e = error as { code: number; details: string };
      assert.equal(e.code, code, `${name}: got ${status[e.code]} (${e.details})`);
      if (field !== undefined) assert.ok(e.details.includes(field), `${name}: "${e.details}"`);
      return true;
    }, name);
  }
  // None of the bad calls changed anything.
  assert.equal((await client.listSessions({})).totalCount, 1);
});

Deno.test("gRPC health: SERVING while up, NOT_SERVING pushed to watchers on shutdown", async () => {
  const service = await startSessionService(
    SessionConfigSchema.parse({ port: 0, storage: "memory" }),
  );
  const health = new HealthClient(service.address, credentials.createInsecure());
  try {
    const check = (name: string) =>
      new Promise<HealthCheckResponse>((resolve, reject) =>
        health.check(
          { service: name },
          (error, response) => error ? reject(error) : resolve(response),
        )
      );
    assert.equal((await check("")).status, Serving.SERVING);
    assert.equal((await check(SESSION_SERVICE_NAME)).status, Serving.SERVING);
    await expectStatus(check("no.such.Service"), status.NOT_FOUND);
    const seen: Serving[] = [];
    const stream = health.watch({ service: SESSION_SERVICE_NAME });
    const ended = new Promise<void>((resolve) => {
      stream.on("data", (message: HealthCheckResponse) => {
        seen.push(message.status);
        if (message.status === Serving.SERVING) void service.shutdown();
      });
      stream.on("end", () => resolve());
      stream.on("error", () => resolve());
    });
    await ended;
    assert.deepEqual(seen, [Serving.SERVING, Serving.NOT_SERVING]);
  } finally {
    health.close();
    await service.shutdown();
  }
});

Deno.test("graceful shutdown finishes in-flight calls, refuses new ones and closes the KV file", async () => {
  await using dir = await tempDir("aetherflow-session-");
  const service = await startKvService(dir.path, { maxSessionsPerUser: 100 });
  const client = new SessionClient(service.address);
  try {
    await client.createSession({ userId: "warm-up" });
    // Let the server receive a burst of calls, then shut down while they are being served.
    const calls = Array.from({ length: 20 }, (_, i) => client.createSession({ userId: `u${i}` }));
    const { promise: received, resolve } = Promise.withResolvers<void>();
    let count = 0;
    const original = service.manager.create.bind(service.manager);
    service.manager.create = (input) => {
      if (++count === 20) resolve();
      return original(input);
    };
    await received;
    const stopping = service.shutdown();
    // Calls arriving while draining are refused with UNAVAILABLE (clients retry elsewhere).
    await expectStatus(client.createSession({ userId: "late" }), status.UNAVAILABLE);
    await stopping;
    const results = await Promise.allSettled(calls);
    assert.deepEqual(results.map((r) => r.status), Array(20).fill("fulfilled"));
  } finally {
    client.close();
    await service.shutdown();
  }
  // The KV file was closed cleanly and holds every acknowledged session.
  await using store = await KvSessionStore.open(kvPathFor(dir.path));
  assert.equal(await store.count({}, Date.now()), 21);
});
