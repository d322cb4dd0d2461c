/**
 * Short load measurements of the gateway against real processes (started like
 * `deno task start`): REST latency, WebSocket op round trips over the shared
 * SubmitOperations stream, and fan-out to many sockets. Run:
 * `deno run -A tests/e2e_gateway_load.ts [--transport tcp|quantum]`. Prints a table.
 * @module
 */
import { parseArgs } from "node:util";
import { freePort, freeUdpPort, tempDir } from "../kernel/testing.ts";
import { DEV_USER, startStack } from "../gateway/start.ts";
import { WsTestClient } from "../gateway/testing.ts";
import { OPEN_LIMITS } from "./open_limits.ts";

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

function row(name: string, samples: number[], seconds: number, count: number) {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    scenario: name,
    "ops/s": Math.round(count / seconds),
    "p50 ms": percentile(sorted, 0.5).toFixed(2),
    "p99 ms": percentile(sorted, 0.99).toFixed(2),
    n: count,
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { transport: { type: "string", default: "tcp" } },
  });
  const transport = values.transport === "quantum" ? "quantum" as const : "tcp" as const;
  await using dir = await tempDir("aetherflow-load-");
  const stack = await startStack({
    dataDir: dir.path,
    gatewayPort: freePort(),
    sessionPort: freePort(),
    statesyncPort: freePort(),
    sessionQuantumPort: freeUdpPort(),
    statesyncQuantumPort: freeUdpPort(),
    transport,
    logs: false,
    env: {
      ...OPEN_LIMITS, // measure the gateway, not its limits
    },
  });
  const rows = [];
  try {
    const base = stack.gatewayUrl;
    const login = await (await fetch(`${base}/api/v1/auth/login`, {
      method: "POST",
      body: JSON.stringify({ username: DEV_USER.username, password: DEV_USER.password }),
    })).json();
    const token = login.data.access_token;
    const auth = { authorization: `Bearer ${token}` };
    const doc = await (await fetch(`${base}/api/v1/documents`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ name: "load", type: "text" }),
    })).json();
    const docId = doc.data.id;

    // 1. GET /ping and GET document, sequential.
    for (
      const [name, path] of [["REST GET /ping", "/ping"], [
        "REST GET document (gRPC)",
        `/api/v1/documents/${docId}`,
      ]] as const
    ) {
      const samples: number[] = [];
      const started = performance.now();
      for (let i = 0; i < 300; i++) {
        const t = performance.now();
        const res = await fetch(`${base}${path}`, { headers: auth });
        await res.body?.cancel();
        samples.push(performance.now() - t);
      }
      rows.push(row(name, samples, (performance.now() - started) / 1000, samples.length));
    }

    // 2. WebSocket ops: sequential round trips, then 64 in flight.
    const wsUrl = `${base.replace("http", "ws")}/ws`;
    const a = await WsTestClient.connect(wsUrl);
    await a.request({ type: "auth", token });
    let version = (await a.request({ type: "subscribe", document_id: docId })).data.version;
    {
      const samples: number[] = [];
      const started = performance.now();
      for (let i = 0; i < 300; i++) {
        const t = performance.now();
        const ack = await a.request({
          type: "op",
          document_id: docId,
          base_version: version,
          components: [{ type: "text_insert", path: ["text"], offset: 0, text: "x" }],
        });
        version = ack.version;
        samples.push(performance.now() - t);
      }
      rows.push(row("WS op ack, sequential", samples, (performance.now() - started) / 1000, 300));
    }
    {
      const total = 2000;
      const window = 64;
      const samples: number[] = [];
      const started = performance.now();
      let sent = 0;
      const worker = async () => {
        while (sent < total) {
          sent++;
          const t = performance.now();
          const ack = await a.request({
            type: "op",
            document_id: docId,
            base_version: version, // up to 63 ops stale: statesync transforms
            components: [{ type: "text_insert", path: ["text"], offset: 0, text: "y" }],
          });
          if (ack.type !== "ack") throw new Error(JSON.stringify(ack));
          version = Math.max(version, ack.version);
          samples.push(performance.now() - t);
        }
      };
      await Promise.all(Array.from({ length: window }, worker));
      rows.push(
        row("WS op ack, 64 in flight", samples, (performance.now() - started) / 1000, total),
      );
    }
    // Drain the subscription events of the ops above before measuring fan-out.
    await a[Symbol.asyncDispose]();

    // 3. Fan-out: one writer, 50 subscribed sockets; time until every socket has the event.
    const readers: WsTestClient[] = [];
    for (let i = 0; i < 50; i++) {
      const c = await WsTestClient.connect(wsUrl);
      await c.request({ type: "auth", token });
      await c.request({ type: "subscribe", document_id: docId });
      readers.push(c);
    }
    const writer = await WsTestClient.connect(wsUrl);
    await writer.request({ type: "auth", token });
    const head = await (await fetch(`${base}/api/v1/documents/${docId}`, { headers: auth }))
      .json();
    version = head.data.version;
    const samples: number[] = [];
    const started = performance.now();
    for (let i = 0; i < 50; i++) {
      const t = performance.now();
      const ack = await writer.request({
        type: "op",
        document_id: docId,
        base_version: version,
        components: [{ type: "text_insert", path: ["text"], offset: 0, text: "z" }],
      });
      version = ack.version;
      await Promise.all(
        readers.map((r) => r.next((m) => m.type === "event" && m.version === ack.version)),
      );
      samples.push(performance.now() - t);
    }
    rows.push(
      row("op → 50 sockets (all delivered)", samples, (performance.now() - started) / 1000, 50),
    );
    for (const c of [...readers, writer]) await c[Symbol.asyncDispose]();
  } finally {
    await stack.shutdown();
  }
  console.log(`gateway load, transport ${transport}, ${navigator.hardwareConcurrency} cores`);
  console.table(rows);
}
