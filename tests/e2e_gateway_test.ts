/**
 * End to end with real processes: session, statesync and gateway started the way
 * `deno task start` starts them (gateway/start.ts), on free ports with a temp data dir.
 */
import assert from "node:assert/strict";
import { freePort, freeUdpPort, tempDir } from "../kernel/testing.ts";
import { DEV_USER, type Stack, type StackOptions, startStack } from "../gateway/start.ts";
import { WsTestClient } from "../gateway/testing.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

function api(stack: Stack) {
  return async (method: string, path: string, options: { body?: unknown; token?: string } = {}) => {
    const headers: Record<string, string> = {};
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    if (options.body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(`${stack.gatewayUrl}${path}`, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    return { status: response.status, json: await response.json() as Json };
  };
}

async function withStack(
  fn: (stack: Stack) => Promise<void>,
  options: Partial<StackOptions> = {},
): Promise<void> {
  await using dir = await tempDir("aetherflow-e2e-");
  const stack = await startStack({
    dataDir: dir.path,
    gatewayPort: freePort(),
    sessionPort: freePort(),
    statesyncPort: freePort(),
    transport: "tcp",
    logs: Deno.env.get("E2E_LOGS") === "1",
    ...options,
  });
  try {
    await fn(stack);
  } finally {
    await stack.shutdown();
  }
}

const insert = (offset: number, text: string) => [
  { type: "text_insert", path: ["text"], offset, text },
];

/** Collect operation_applied events until `version` is reached. */
async function opsUntil(client: WsTestClient, version: number): Promise<Json[]> {
  const events: Json[] = [];
  while (events.length === 0 || events.at(-1).version < version) {
    const event = await client.next((m) => m.type === "event" && m.event === "operation_applied");
    events.push(event);
  }
  return events;
}

/** Log in, create a document, converge two sockets on stale inserts, resume one. */
async function collaborationFlow(stack: Stack): Promise<void> {
  const call = api(stack);
  const health = await call("GET", "/health");
  assert.equal(health.status, 200, JSON.stringify(health.json));
  const login = await call("POST", "/api/v1/auth/login", {
    body: { username: DEV_USER.username, password: DEV_USER.password },
  });
  assert.equal(login.status, 200, JSON.stringify(login.json));
  const token = login.json.data.access_token;
  const created = await call("POST", "/api/v1/documents", {
    token,
    body: { name: "e2e", type: "text", content: { text: "" } },
  });
  assert.equal(created.status, 201, JSON.stringify(created.json));
  const docId = created.json.data.id;

  const wsUrl = `${stack.gatewayUrl.replace("http", "ws")}/ws`;
  const a = await WsTestClient.connect(wsUrl);
  let b = await WsTestClient.connect(wsUrl);
  try {
    for (const c of [a, b]) {
      assert.equal((await c.request({ type: "auth", token })).type, "reply");
      const sub = await c.request({ type: "subscribe", document_id: docId });
      assert.equal(sub.data.version, 0, JSON.stringify(sub));
    }
    // Both clients edit at once, every op made against the stale version 0.
    const n = 5;
    const pending: Promise<Json>[] = [];
    for (let i = 0; i < n; i++) {
      pending.push(a.request({
        type: "op",
        document_id: docId,
        base_version: 0,
        client_op_id: `a${i}`,
        components: insert(0, `A${i};`),
      }));
      pending.push(b.request({
        type: "op",
        document_id: docId,
        base_version: 0,
        client_op_id: `b${i}`,
        components: insert(0, `B${i};`),
      }));
    }
    const acks = await Promise.all(pending);
    for (const ack of acks) assert.equal(ack.type, "ack", JSON.stringify(ack));
    assert.deepEqual(
      acks.map((x) => x.version).sort((x, y) => x - y),
      Array.from({ length: 2 * n }, (_, i) => i + 1),
    );
    const seenA = await opsUntil(a, 2 * n);
    const seenB = await opsUntil(b, 2 * n);
    assert.deepEqual(seenA.map((e) => e.version), seenB.map((e) => e.version));
    assert.deepEqual(
      seenA.map((e) => e.operation.id),
      seenB.map((e) => e.operation.id),
      "both sockets saw the same ops in the same order",
    );
    const doc = await call("GET", `/api/v1/documents/${docId}`, { token });
    assert.equal(doc.json.data.version, 2 * n);
    const text: string = doc.json.data.content.text;
    for (let i = 0; i < n; i++) {
      assert.ok(text.includes(`A${i};`) && text.includes(`B${i};`), text);
    }
    assert.equal(text.length, 2 * n * 3, "nothing lost, nothing doubled");

    // b disconnects at version 2n; a keeps editing; b resumes from its last version.
    await b[Symbol.asyncDispose]();
    const missed: Json[] = [];
    for (let i = 0; i < 3; i++) {
      missed.push(
        await a.request({
          type: "op",
          document_id: docId,
          base_version: 2 * n + i,
          components: insert(0, `M${i};`),
        }),
      );
    }
    for (const m of missed) assert.equal(m.type, "ack", JSON.stringify(m));
    b = await WsTestClient.connect(wsUrl);
    await b.request({ type: "auth", token });
    const resumed = await b.request({
      type: "subscribe",
      document_id: docId,
      from_version: 2 * n,
    });
    assert.equal(resumed.type, "reply", JSON.stringify(resumed));
    assert.equal(resumed.data.replayed, 3);
    const replayed = b.pending.filter((m) => m.type === "event");
    assert.deepEqual(replayed.map((e) => e.version), [2 * n + 1, 2 * n + 2, 2 * n + 3]);
    assert.deepEqual(
      replayed.map((e) => e.operation.id),
      missed.map((m) => m.operation.id),
      "exactly the missed ops",
    );
  } finally {
    await a[Symbol.asyncDispose]();
    await b[Symbol.asyncDispose]();
  }

  // Refresh rotation through the real session service: a reused token ends the family.
  const second = await call("POST", "/api/v1/auth/login", {
    body: { username: DEV_USER.username, password: DEV_USER.password },
  });
  const rotated = await call("POST", "/api/v1/auth/refresh", {
    body: { refresh_token: second.json.data.refresh_token },
  });
  assert.equal(rotated.status, 200, JSON.stringify(rotated.json));
  const reused = await call("POST", "/api/v1/auth/refresh", {
    body: { refresh_token: second.json.data.refresh_token },
  });
  assert.equal(reused.status, 401);
  const family = await call("POST", "/api/v1/auth/refresh", {
    body: { refresh_token: rotated.json.data.refresh_token },
  });
  assert.equal(family.status, 401, "the whole family is revoked");
}

Deno.test({
  name: "e2e: login, create a document, two sockets converge on concurrent stale inserts, " +
    "and a reconnecting socket resumes with exactly the missed ops",
  sanitizeResources: false, // fetch keep-alive connections are pooled by the runtime
  async fn() {
    await withStack(collaborationFlow);
  },
});

Deno.test({
  name: "e2e: the breaker opens when statesync stops and closes when it is back, " +
    "without restarting the gateway",
  sanitizeResources: false,
  async fn() {
    await withStack(async (stack) => {
      const call = api(stack);
      const login = await call("POST", "/api/v1/auth/login", {
        body: { username: DEV_USER.username, password: DEV_USER.password },
      });
      const token = login.json.data.access_token; // dev is an admin: may read /breaker/stats
      assert.equal((await call("GET", "/api/v1/documents", { token })).status, 200);
      // A socket subscribed across the outage keeps receiving once statesync is back.
      const created = await call("POST", "/api/v1/documents", {
        token,
        body: { name: "outage", type: "text" },
      });
      const docId = created.json.data.id;
      await using ws = await WsTestClient.connect(`${stack.gatewayUrl.replace("http", "ws")}/ws`);
      await ws.request({ type: "auth", token });
      assert.equal((await ws.request({ type: "subscribe", document_id: docId })).type, "reply");

      await stack.stop("statesync");
      const health = await call("GET", "/health");
      assert.equal(health.status, 503);
      assert.equal(health.json.data.backends.statesync.status, "UNREACHABLE");

      let rejectedByBreaker = 0;
      for (let i = 0; i < 40; i++) {
        const res = await call("GET", "/api/v1/documents", { token });
        assert.equal(res.status, 503, JSON.stringify(res.json));
        if (/breaker open/.test(res.json.message)) rejectedByBreaker++;
      }
      assert.ok(rejectedByBreaker > 0, "the breaker started failing calls fast");
      const stats = await call("GET", "/breaker/stats", { token });
      const list = stats.json.data.breakers.find((b: Json) => b.name === "statesync/ListDocuments");
      assert.equal(list.state, "open", JSON.stringify(list));
      assert.ok(list.rejected > 0);

      await stack.start("statesync");
      // Recovery is time-driven (forced probe each second, 10 s window): poll with pauses.
      const deadline = Date.now() + 30_000;
      let recovered = false;
      while (Date.now() < deadline) {
        const res = await call("GET", "/api/v1/documents", { token });
        const breaker = (await call("GET", "/breaker/stats", { token })).json.data.breakers
          .find((b: Json) => b.name === "statesync/ListDocuments");
        if (res.status === 200 && breaker.state === "closed") {
          recovered = true;
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.ok(recovered, "calls succeed and the breaker closed again");
      assert.equal((await call("GET", "/health")).status, 200);
      const applied = await call("POST", `/api/v1/documents/${docId}/operations`, {
        token,
        body: { base_version: 0, components: insert(0, "back") },
      });
      assert.equal(applied.status, 200, JSON.stringify(applied.json));
      const event = await ws.next((m) => m.event === "operation_applied" && m.version === 1);
      assert.equal(event.operation.components[0].text, "back");
    });
  },
});

const quantum = await import("../quantum/mod.ts") as Record<string, unknown>;
const quantumReady = ["connectGrpcOverQuantum", "serveGrpcOverQuantum", "listen", "startRelay"]
  .every((name) => typeof quantum[name] === "function");

Deno.test({
  name: "e2e: the same flow with gateway ↔ services over Quantum through relays at 5% loss",
  ignore: !quantumReady, // needs quantum's gRPC bridge (both sides) and relay in quantum/mod.ts
  sanitizeResources: false,
  async fn() {
    type Counts = { offered: number; lost: number };
    type Relay = {
      addr: Deno.NetAddr;
      close(): Promise<void>;
      stats(): { upstream: Counts; downstream: Counts };
    };
    const startRelay = quantum.startRelay as (options: {
      target: { hostname: string; port: number };
      impairments: { loss: number; seed: number };
    }) => Relay;
    const sessionQuantumPort = freeUdpPort();
    const statesyncQuantumPort = freeUdpPort();
    const relays = [
      startRelay({
        target: { hostname: "127.0.0.1", port: sessionQuantumPort },
        impairments: { loss: 0.05, seed: 7 },
      }),
      startRelay({
        target: { hostname: "127.0.0.1", port: statesyncQuantumPort },
        impairments: { loss: 0.05, seed: 11 },
      }),
    ];
    try {
      await withStack(async (stack) => {
        const health = await api(stack)("GET", "/health");
        if (health.json.data.backends.session.status !== "SERVING") {
          // The session service may not serve gRPC over Quantum yet: say so, use TCP for it.
          console.warn("session is not reachable over Quantum: its calls use TCP in this test");
          stack.options.transports = { session: "tcp" };
          delete stack.options.dialSession; // dial the session's TCP port directly
          await stack.stop("gateway");
          await stack.start("gateway");
        }
        assert.equal(
          (await api(stack)("GET", "/health")).json.data.backends.statesync.transport,
          "quantum",
        );
        await collaborationFlow(stack);
      }, {
        transport: "quantum",
        sessionQuantumPort,
        statesyncQuantumPort,
        dialSession: `127.0.0.1:${relays[0]!.addr.port}`,
        dialStatesync: `127.0.0.1:${relays[1]!.addr.port}`,
      });
      const links = relays.map((relay) => relay.stats());
      assert.ok(links.every((l) => l.upstream.offered > 10), "both services over Quantum");
      const lost = links.reduce((n, l) => n + l.upstream.lost + l.downstream.lost, 0);
      assert.ok(lost > 0, `datagrams were really lost: ${JSON.stringify(links)}`);
    } finally {
      for (const relay of relays) await relay.close();
    }
  },
});
