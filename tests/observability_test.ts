/**
 * Observability, checked against the real thing: promtool on the Prometheus config and alert
 * rules, the Grafana dashboard parses, a running stack (session, statesync and gateway child
 * processes started like `deno task start`) serves /metrics that move by the right amounts
 * under traffic and contain every metric the alerts and the dashboard use, and one WebSocket
 * operation yields one trace across the gateway and statesync processes (Deno's built-in
 * OpenTelemetry exporting OTLP http/json to a receiver in this test).
 */
import assert from "node:assert/strict";
import { freePort, freeUdpPort, needs, tempDir } from "../kernel/testing.ts";
import {
  DEV_USER,
  quantumAvailable,
  type Stack,
  type StackOptions,
  startStack,
} from "../gateway/start.ts";
import { WsTestClient } from "../gateway/testing.ts";
import { Registry } from "prom-client";

// deno-lint-ignore no-explicit-any
type Json = any;

const ROOT = new URL("../", import.meta.url);
const PROMETHEUS_YML = new URL("deploy/prometheus/prometheus.yml", ROOT).pathname;
const ALERTS_YML = new URL("deploy/prometheus/alerts.yml", ROOT).pathname;
const ALERTS_TEST_YML = new URL("deploy/prometheus/alerts_test.yml", ROOT).pathname;
const DASHBOARD = new URL("deploy/grafana/aetherflow.json", ROOT).pathname;

const promtool = needs("promtool");

async function run(cmd: string, args: string[], stdin?: string) {
  const child = new Deno.Command(cmd, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const out = await child.output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, text: decode(out.stdout) + decode(out.stderr) };
}

Deno.test({
  name: "promtool accepts the Prometheus scrape config and the alert rules, and the rules fire " +
    "as their unit tests expect" + promtool.note,
  ignore: promtool.ignore,
  async fn() {
    const config = await run("promtool", ["check", "config", PROMETHEUS_YML]);
    assert.equal(config.code, 0, config.text);
    const rules = await run("promtool", ["check", "rules", ALERTS_YML]);
    assert.equal(rules.code, 0, rules.text);
    assert.match(rules.text, /SUCCESS: \d+ rules found/);
    const unit = await run("promtool", ["test", "rules", ALERTS_TEST_YML]);
    assert.equal(unit.code, 0, unit.text);
    assert.match(unit.text, /SUCCESS/);
  },
});

/** Every PromQL expression of the alert rules (the `expr:` values, block or inline). */
async function alertExpressions(): Promise<string[]> {
  const { parse } = await import("yaml");
  const doc = parse(await Deno.readTextFile(ALERTS_YML)) as {
    groups: { rules: { alert: string; expr: string }[] }[];
  };
  return doc.groups.flatMap((g) => g.rules.map((r) => r.expr));
}

async function dashboardExpressions(): Promise<string[]> {
  const dashboard = JSON.parse(await Deno.readTextFile(DASHBOARD)) as {
    panels: { type: string; targets?: { expr: string }[] }[];
  };
  return dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
}

/** Metric names a PromQL expression reads (ours and the process metrics; not `up`). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b((?:aetherflow|process|nodejs)_[a-z0-9_]+)\b/g)].map((m) => m[1]!);
}

Deno.test("the Grafana dashboard parses: unique panel ids, a PromQL target per graph, alert names unique", async () => {
  const dashboard = JSON.parse(await Deno.readTextFile(DASHBOARD)) as Json;
  assert.equal(dashboard.uid, "aetherflow-overview");
  const ids = dashboard.panels.map((p: Json) => p.id);
  assert.equal(new Set(ids).size, ids.length, "panel ids are unique");
  const graphs = dashboard.panels.filter((p: Json) => p.type !== "row");
  assert.ok(graphs.length >= 20, `${graphs.length} panels`);
  for (const panel of graphs) {
    assert.ok(panel.targets.length > 0, `${panel.title} has a query`);
    for (const target of panel.targets) {
      assert.ok(metricNames(target.expr).length > 0 || /\bup\b/.test(target.expr), target.expr);
    }
    assert.ok(panel.gridPos.w > 0 && panel.gridPos.h > 0, panel.title);
  }
  const { parse } = await import("yaml");
  const alerts = parse(await Deno.readTextFile(ALERTS_YML)) as Json;
  const names = alerts.groups.flatMap((g: Json) => g.rules.map((r: Json) => r.alert));
  assert.equal(new Set(names).size, names.length);
  for (
    const topic of [
      "ServiceDown",
      "HighHttpErrorRate",
      "HttpLatencyP99High",
      "BreakerOpen",
      "QuantumRetransmitSpike",
      "QuantumDropSpike",
      "SlowConsumerDisconnects",
    ]
  ) {
    assert.ok(names.includes(`Aetherflow${topic}`), topic);
  }
});

// ---- a running stack ------------------------------------------------------------------------

async function withStack(
  options: Partial<StackOptions>,
  fn: (stack: Stack, ports: { session: number; statesync: number }) => Promise<void>,
): Promise<void> {
  await using dir = await tempDir("aetherflow-observability-");
  const ports = { session: freePort(), statesync: freePort() };
  const stack = await startStack({
    dataDir: dir.path,
    gatewayPort: freePort(),
    sessionPort: freePort(),
    statesyncPort: freePort(),
    sessionMetricsPort: ports.session,
    statesyncMetricsPort: ports.statesync,
    transport: "tcp",
    logs: Deno.env.get("E2E_LOGS") === "1",
    ...options,
  });
  try {
    await fn(stack, ports);
  } finally {
    await stack.shutdown();
  }
}

async function scrape(url: string): Promise<string> {
  const response = await fetch(url);
  assert.equal(response.status, 200, url);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain/);
  return await response.text();
}

/** Sum of the samples of `name` whose labels include `labels`. */
function value(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name + "{") && !line.startsWith(name + " ")) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) {
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return sum;
}

/**
 * Names of every series a scrape can hold: sample names, plus every declared family (a
 * family with no series yet, e.g. drops by a reason never seen, still exists; a histogram
 * family declares its _bucket, _count and _sum).
 */
function sampleNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split("\n")) {
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line);
    if (sample) names.add(sample[1]!);
    const family = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$/.exec(line);
    if (family) {
      names.add(family[1]!);
      if (family[2] === "histogram") {
        for (const suffix of ["_bucket", "_count", "_sum"]) names.add(family[1]! + suffix);
      }
    }
  }
  return names;
}

async function login(stack: Stack): Promise<string> {
  const response = await fetch(`${stack.gatewayUrl}/api/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: DEV_USER.username, password: DEV_USER.password }),
  });
  const body = await response.json() as Json;
  assert.equal(response.status, 200, JSON.stringify(body));
  return body.data.access_token;
}

async function createDocument(stack: Stack, token: string): Promise<string> {
  const response = await fetch(`${stack.gatewayUrl}/api/v1/documents`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ name: "observed", type: "text", content: { text: "" } }),
  });
  const body = await response.json() as Json;
  assert.equal(response.status, 201, JSON.stringify(body));
  return body.data.id;
}

const insert = (offset: number, text: string) => [
  { type: "text_insert", path: ["text"], offset, text },
];

/**
 * A small lossy Quantum transfer measured by {@link QuantumMetrics} (used while the stack
 * cannot serve gRPC over Quantum: then its processes have no Quantum listener to scrape).
 */
async function quantumTransferMetrics(): Promise<string> {
  const { dial, listen, QuantumMetrics, startRelay } = await import("../quantum/mod.ts");
  const registry = new Registry();
  const metrics = new QuantumMetrics(registry);
  const listener = metrics.observeListener("statesync", listen({ hostname: "127.0.0.1", port: 0 }));
  await using relay = startRelay({
    target: { hostname: "127.0.0.1", port: listener.addr.port },
    impairments: { loss: 0.05, seed: 11 },
  });
  try {
    const server = (async () => {
      const conn = (await listener.accept())!;
      for await (const _ of conn.readable) { /* drain */ }
      await conn.close();
    })();
    const client = await dial({ hostname: "127.0.0.1", port: relay.addr.port });
    const writer = client.writable.getWriter();
    await writer.write(new Uint8Array(64 * 1024).fill(7));
    await writer.close();
    await server;
    await client.close();
    const text = await registry.metrics();
    assert.equal(value(text, "aetherflow_quantum_goodput_bytes_total"), 64 * 1024);
    return text;
  } finally {
    await listener.close();
  }
}

Deno.test({
  name: "a running stack's /metrics move by the traffic driven, pass promtool check metrics, " +
    "and hold every metric the alerts and the dashboard use" + promtool.note,
  ignore: promtool.ignore,
  async fn() {
    // statesync behind Quantum when this build has gRPC over Quantum (its listener is then
    // measured on statesync's /metrics); else a lossy Quantum transfer measured in this test.
    const overQuantum = await quantumAvailable();
    const options: Partial<StackOptions> = overQuantum
      ? { transports: { statesync: "quantum" }, statesyncQuantumPort: freeUdpPort() }
      : {};
    await withStack(options, async (stack, ports) => {
      const urls = {
        gateway: `${stack.gatewayUrl}/metrics`,
        session: `http://127.0.0.1:${ports.session}/metrics`,
        statesync: `http://127.0.0.1:${ports.statesync}/metrics`,
      };
      const scrapeAll = async () => ({
        gateway: await scrape(urls.gateway),
        session: await scrape(urls.session),
        statesync: await scrape(urls.statesync),
      });
      const before = await scrapeAll();

      const token = await login(stack);
      const documentId = await createDocument(stack, token);
      const ws = await WsTestClient.connect(`${stack.gatewayUrl.replace("http", "ws")}/ws`);
      let during;
      try {
        assert.equal((await ws.request({ type: "auth", token })).type, "reply");
        await ws.request({ type: "subscribe", document_id: documentId });
        for (let i = 0; i < 3; i++) {
          // Every op made against version 0: the 2nd and 3rd are transformed.
          const ack = await ws.request({
            type: "op",
            document_id: documentId,
            base_version: 0,
            client_op_id: `op${i}`,
            components: insert(0, `x${i}`),
          });
          assert.equal(ack.type, "ack", JSON.stringify(ack));
        }
        during = await scrapeAll();
      } finally {
        await ws[Symbol.asyncDispose]();
      }
      const after = await scrapeAll();
      const delta = (service: keyof typeof before, name: string, labels = {}) =>
        value(after[service], name, labels) - value(before[service], name, labels);

      // Gateway: HTTP by route template, WebSocket, ops, gRPC client calls.
      const http = "aetherflow_gateway_http_requests_total";
      assert.equal(delta("gateway", http, { route: "/api/v1/auth/login", status: "200" }), 1);
      assert.equal(delta("gateway", http, { route: "/api/v1/documents", status: "201" }), 1);
      assert.equal(
        delta("gateway", "aetherflow_gateway_http_request_duration_seconds_count", {
          route: "/api/v1/documents",
          method: "POST",
        }),
        1,
      );
      assert.ok(!after.gateway.includes(documentId), "no document id in gateway labels");
      assert.equal(delta("gateway", "aetherflow_gateway_operations_acked_total"), 3);
      assert.equal(value(during!.gateway, "aetherflow_gateway_websocket_connections"), 1);
      assert.equal(delta("gateway", "aetherflow_gateway_websocket_messages_received_total"), 5);
      assert.equal(
        delta("gateway", "aetherflow_grpc_client_handled_total", {
          method: "CreateDocument",
          code: "OK",
        }),
        1,
      );
      // Statesync: ops applied (not via unary calls: the gateway's submit stream), transforms,
      // apply histogram, documents, gRPC server calls.
      const ops = "aetherflow_statesync_operations_total";
      assert.equal(delta("statesync", ops, { outcome: "applied" }), 3);
      // Pairwise transforms: op1 past op0, op2 past op0 and op1.
      assert.equal(delta("statesync", "aetherflow_statesync_transforms_total"), 3);
      assert.equal(
        delta("statesync", "aetherflow_statesync_apply_seconds_count", { outcome: "applied" }),
        3,
      );
      assert.equal(value(after.statesync, "aetherflow_statesync_documents"), 1);
      assert.equal(
        delta("statesync", "aetherflow_grpc_server_handled_total", {
          method: "CreateDocument",
          code: "OK",
        }),
        1,
      );
      assert.ok(!after.statesync.includes(documentId), "no document id in statesync labels");
      // Session: what the gateway created on login, seen on both sides of the call.
      const sessionsCreated = delta("session", "aetherflow_session_sessions_created_total");
      assert.equal(
        sessionsCreated,
        delta("session", "aetherflow_grpc_server_handled_total", {
          method: "CreateSession",
          code: "OK",
        }),
      );
      assert.equal(
        sessionsCreated,
        delta("gateway", "aetherflow_grpc_client_handled_total", {
          method: "CreateSession",
          code: "OK",
        }),
      );

      // The exposition text is valid and lint-clean for promtool.
      for (const [service, text] of Object.entries(after)) {
        const check = await run("promtool", ["check", "metrics"], text);
        assert.equal(check.code, 0, `${service}: ${check.text}`);
      }

      // Every metric the alerts and the dashboard read exists somewhere in the system.
      if (overQuantum) {
        const listener = { listener: "statesync" };
        assert.ok(
          value(after.statesync, "aetherflow_quantum_connections_accepted_total", listener) >= 1,
        );
        assert.ok(value(after.statesync, "aetherflow_quantum_goodput_bytes_total", listener) > 0);
      }
      const quantum = overQuantum ? "" : await quantumTransferMetrics();
      const present = new Set([
        ...sampleNames(after.gateway),
        ...sampleNames(after.session),
        ...sampleNames(after.statesync),
        ...sampleNames(quantum),
      ]);
      const used = new Set(
        [...await alertExpressions(), ...await dashboardExpressions()].flatMap(metricNames),
      );
      assert.ok(used.size > 30, `${used.size} metric names used`);
      const missing = [...used].filter((name) => !present.has(name));
      assert.deepEqual(missing, [], "metrics used by alerts or the dashboard but never exposed");
    });
  },
});

// ---- tracing ----------------------------------------------------------------------------------

interface ReceivedSpan {
  service: string;
  scope: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
}

/** A minimal OTLP/HTTP (json) receiver: collects the spans of POST /v1/traces. */
function startOtlpReceiver() {
  const spans: ReceivedSpan[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    const body = await req.text();
    if (path === "/v1/traces" && req.method === "POST") {
      const payload = JSON.parse(body) as Json;
      for (const rs of payload.resourceSpans ?? []) {
        const service = (rs.resource?.attributes ?? [])
          .find((a: Json) => a.key === "service.name")?.value?.stringValue ?? "";
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            const attributes: Record<string, unknown> = {};
            for (const a of s.attributes ?? []) {
              attributes[a.key] = Object.values(a.value ?? {})[0];
            }
            spans.push({
              service,
              scope: ss.scope?.name ?? "",
              traceId: s.traceId,
              spanId: s.spanId,
              parentSpanId: s.parentSpanId ?? "",
              name: s.name,
              kind: s.kind,
              attributes,
            });
          }
        }
      }
    }
    return Response.json({});
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    spans,
    close: () => server.shutdown(),
  };
}

Deno.test("one WebSocket operation is one trace: gateway WS span → statesync server span → store commit", async () => {
  const receiver = startOtlpReceiver();
  try {
    let documentId = "";
    await withStack({
      env: {
        OTEL_DENO: "true",
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      },
    }, async (stack) => {
      const token = await login(stack);
      documentId = await createDocument(stack, token);
      const ws = await WsTestClient.connect(`${stack.gatewayUrl.replace("http", "ws")}/ws`);
      try {
        assert.equal((await ws.request({ type: "auth", token })).type, "reply");
        const ack = await ws.request({
          type: "op",
          document_id: documentId,
          base_version: 0,
          client_op_id: "traced",
          components: insert(0, "hello"),
        });
        assert.equal(ack.type, "ack", JSON.stringify(ack));
      } finally {
        await ws[Symbol.asyncDispose]();
      }
      // Shutting the stack down (SIGTERM → exit) makes every process flush its spans.
    });
    const spans = receiver.spans;
    const byService = (service: string) => spans.filter((s) => s.service === service);
    assert.ok(byService("aetherflow-gateway").length > 0, "gateway exported spans");
    assert.ok(byService("aetherflow-statesync").length > 0, "statesync exported spans");

    // The WebSocket op: gateway "WS op" → statesync SubmitOperations → store commit.
    const wsOp = byService("aetherflow-gateway").find((s) => s.name === "WS op");
    assert.ok(wsOp, `no WS op span in ${spans.map((s) => `${s.service}:${s.name}`).join(", ")}`);
    const trace = spans.filter((s) => s.traceId === wsOp.traceId);
    const submit = trace.find((s) =>
      s.service === "aetherflow-statesync" && s.name.endsWith("/SubmitOperations")
    );
    assert.ok(submit, `statesync span in the op's trace: ${trace.map((s) => s.name)}`);
    assert.equal(submit.parentSpanId, wsOp.spanId, "statesync span is a child of the WS span");
    assert.equal(submit.kind, 2, "SERVER");
    const commit = trace.find((s) => s.name === "statesync.store commit");
    assert.ok(commit, `store commit span in the op's trace: ${trace.map((s) => s.name)}`);
    assert.equal(commit.service, "aetherflow-statesync");
    assert.equal(commit.parentSpanId, submit.spanId, "the commit is a child of the server span");

    // An HTTP call: gateway "POST /api/v1/documents" → statesync CreateDocument (metadata).
    const post = byService("aetherflow-gateway").find((s) =>
      s.name === "POST /api/v1/documents" && s.attributes["http.route"] === "/api/v1/documents"
    );
    assert.ok(post, "gateway HTTP span named {method} {route}");
    const create = spans.find((s) =>
      s.service === "aetherflow-statesync" && s.name.endsWith("/CreateDocument")
    );
    assert.ok(create, "statesync CreateDocument span");
    assert.equal(create.traceId, post.traceId);
    // Its parent: the gateway's HTTP span itself, or (Deno 2.9 traces node:http2, which grpc-js
    // uses) the gateway's HTTP/2 client span for the call, whose parent is the HTTP span.
    const via = spans.find((s) => s.spanId === create.parentSpanId);
    assert.ok(via, "the parent span was exported too");
    assert.equal(via.service, "aetherflow-gateway");
    if (via.spanId !== post.spanId) {
      assert.equal(via.kind, 3, "CLIENT");
      assert.match(String(via.attributes["url.path"]), /\/CreateDocument$/);
      assert.equal(via.parentSpanId, post.spanId);
    }
    const stored = spans.find((s) => s.name === "statesync.store create_document");
    assert.equal(stored?.parentSpanId, create.spanId, "store span is a child of CreateDocument");
    assert.equal(Number(create.attributes["rpc.grpc.status_code"]), 0);
    assert.ok(!JSON.stringify(spans).includes(DEV_USER.password), "no password in any span");
  } finally {
    await receiver.close();
  }
});
