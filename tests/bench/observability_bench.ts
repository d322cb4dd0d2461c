/**
 * What observability costs: WebSocket operation round trips through a real stack (gateway,
 * session, statesync child processes) with Deno's OpenTelemetry off and on (exporting OTLP
 * http/json to a receiver in this process), and the size and time of each /metrics scrape.
 *
 * `deno task bench:observability [--ops 300]`
 * @module
 */
import { parseArgs } from "node:util";
import { freePort, tempDir } from "../../kernel/testing.ts";
import { DEV_USER, startStack } from "../../gateway/start.ts";
import { WsTestClient } from "../../gateway/testing.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { ops: { type: "string", default: "300" } },
});
const OPS = Number(values.ops);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

async function run(tracing: boolean) {
  let spans = 0;
  const receiver = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      const body = await req.text();
      if (new URL(req.url).pathname === "/v1/traces") spans += body.split('"spanId"').length - 1;
      return Response.json({});
    },
  );
  await using dir = await tempDir("aetherflow-obs-bench-");
  const metricsPorts = { session: freePort(), statesync: freePort() };
  const stack = await startStack({
    dataDir: dir.path,
    gatewayPort: freePort(),
    sessionPort: freePort(),
    statesyncPort: freePort(),
    sessionMetricsPort: metricsPorts.session,
    statesyncMetricsPort: metricsPorts.statesync,
    transport: "tcp",
    logs: false,
    env: tracing
      ? {
        OTEL_DENO: "true",
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.addr.port}`,
      }
      : {},
  });
  const latencies: number[] = [];
  const scrapes: { target: string; bytes: number; ms: number }[] = [];
  try {
    const login = await fetch(`${stack.gatewayUrl}/api/v1/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username: DEV_USER.username, password: DEV_USER.password }),
    }).then((r) => r.json());
    const token = login.data.access_token;
    const doc = await fetch(`${stack.gatewayUrl}/api/v1/documents`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ name: "bench", type: "json", content: { n: 0 } }),
    }).then((r) => r.json());
    await using ws = await WsTestClient.connect(`${stack.gatewayUrl.replace("http", "ws")}/ws`);
    await ws.request({ type: "auth", token });
    for (let i = 0; i < OPS + 20; i++) {
      const started = performance.now();
      const ack = await ws.request({
        type: "op",
        document_id: doc.data.id,
        base_version: i,
        components: [{ type: "increment", path: ["n"], delta: 1 }],
      });
      if (ack.type !== "ack") throw new Error(JSON.stringify(ack));
      if (i >= 20) latencies.push(performance.now() - started); // 20 warm-up ops
    }
    for (
      const [target, url] of [
        ["gateway", `${stack.gatewayUrl}/metrics`],
        ["session", `http://127.0.0.1:${metricsPorts.session}/metrics`],
        ["statesync", `http://127.0.0.1:${metricsPorts.statesync}/metrics`],
      ] as const
    ) {
      const times: number[] = [];
      let bytes = 0;
      for (let i = 0; i < 20; i++) {
        const started = performance.now();
        bytes = (await (await fetch(url)).text()).length;
        times.push(performance.now() - started);
      }
      times.sort((a, b) => a - b);
      scrapes.push({ target, bytes, ms: percentile(times, 0.5) });
    }
  } finally {
    await stack.shutdown();
    await receiver.shutdown();
  }
  latencies.sort((a, b) => a - b);
  return {
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    perSecond: OPS / (latencies.reduce((a, b) => a + b, 0) / 1000),
    spans,
    scrapes,
  };
}

const off = await run(false);
const on = await run(true);
const f = (n: number) => n.toFixed(2);
console.log(
  `\n${OPS} sequential WebSocket ops (increment), one client, gateway → statesync over TCP`,
);
console.log("| OpenTelemetry | p50 ms | p99 ms | ops/s | spans exported |");
console.log("|---|---|---|---|---|");
console.log(`| off | ${f(off.p50)} | ${f(off.p99)} | ${off.perSecond.toFixed(0)} | ${off.spans} |`);
console.log(
  `| on (OTLP http/json) | ${f(on.p50)} | ${f(on.p99)} | ${
    on.perSecond.toFixed(0)
  } | ${on.spans} |`,
);
console.log("\n/metrics scrape (median of 20, tracing off)");
console.log("| target | bytes | ms |");
console.log("|---|---|---|");
for (const s of off.scrapes) console.log(`| ${s.target} | ${s.bytes} | ${f(s.ms)} |`);
