import assert from "node:assert/strict";
import { credentials, Metadata, Server, ServerCredentials } from "@grpc/grpc-js";
import {
  HealthCheckResponse_ServingStatus as Status,
  HealthClient,
  type HealthServer,
  HealthService,
} from "../proto/gen/health.ts";
import {
  createMetricsRegistry,
  GrpcClientMetrics,
  grpcCodeName,
  GrpcServerMetrics,
  serveMetrics,
} from "./metrics.ts";
import { contextFromTraceparent, currentTraceparent } from "./tracing.ts";
import { trace } from "@opentelemetry/api";

/** The value of one sample line (`name{labels} value`) in exposition text, or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name + "{") && !line.startsWith(name + " ")) continue;
    const wanted = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
    if (wanted) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return undefined;
}

Deno.test("grpc server metrics count unary calls by method and code, and streams when they end", async () => {
  const registry = createMetricsRegistry({ processMetrics: false });
  const grpc = new GrpcServerMetrics(registry);
  const handlers: HealthServer = {
    check: (call, callback) => {
      if (call.request.service === "") callback(null, { status: Status.SERVING });
      else callback({ code: 5, details: "Unknown service" });
    },
    watch: (call) => {
      call.write({ status: Status.SERVING });
      if (call.request.service === "end") call.end();
    },
  };
  // A hook tells the test when a call's end was recorded (no polling, no sleeping).
  const ended: Array<{ method: string; code: number }> = [];
  let onEnd = () => {};
  const server = new Server();
  server.addService(
    HealthService,
    grpc.instrument(HealthService, handlers, {
      hooks: [{
        start: (method) => ({
          end(code) {
            ended.push({ method: method.method, code });
            onEnd();
          },
        }),
      }],
    }),
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      ServerCredentials.createInsecure(),
      (e, p) => e ? reject(e) : resolve(p),
    )
  );
  const client = new HealthClient(`127.0.0.1:${port}`, credentials.createInsecure());
  const clientMetrics = new GrpcClientMetrics(registry);
  const labels = { service: "grpc.health.v1.Health", method: "Check" };
  try {
    const check = (service: string) =>
      clientMetrics.measure(
        labels,
        () =>
          new Promise((resolve, reject) =>
            client.check({ service }, new Metadata(), (e, r) => e ? reject(e) : resolve(r))
          ),
      );
    await check("");
    await check("");
    await assert.rejects(check("nope"), { code: 5 });
    // A stream the server ends (OK) and one the client cancels (CANCELLED).
    await new Promise<void>((resolve, reject) => {
      const stream = client.watch({ service: "end" });
      stream.on("data", () => {});
      stream.on("end", resolve);
      stream.on("error", reject);
    });
    await new Promise<void>((resolve) => {
      const stream = client.watch({ service: "" });
      stream.on("data", () => stream.cancel());
      stream.on("error", () => resolve());
    });
    // The cancellation reaches the server asynchronously: wait for its end to be recorded.
    await new Promise<void>((resolve) => {
      onEnd = () => ended.length === 5 && resolve();
      onEnd();
    });
    assert.deepEqual(ended.filter((e) => e.method === "Watch").map((e) => e.code), [0, 1]);
    const text = await registry.metrics();
    const handled = "aetherflow_grpc_server_handled_total";
    assert.equal(sample(text, handled, { method: "Check", code: "OK" }), 2);
    assert.equal(sample(text, handled, { method: "Check", code: "NOT_FOUND" }), 1);
    assert.equal(sample(text, handled, { method: "Watch", code: "OK" }), 1);
    assert.equal(sample(text, handled, { method: "Watch", code: "CANCELLED" }), 1);
    assert.equal(
      sample(text, "aetherflow_grpc_server_handling_seconds_count", {
        method: "Check",
        code: "OK",
      }),
      2,
    );
    assert.equal(sample(text, "aetherflow_grpc_server_started_total", { method: "Watch" }), 2);
    assert.equal(
      sample(text, "aetherflow_grpc_client_handled_total", { method: "Check", code: "OK" }),
      2,
    );
    assert.equal(
      sample(text, "aetherflow_grpc_client_handled_total", { method: "Check", code: "NOT_FOUND" }),
      1,
    );
  } finally {
    client.close();
    server.forceShutdown();
  }
});

Deno.test("serveMetrics serves the registry and health, with process metrics", async () => {
  const registry = createMetricsRegistry();
  let healthy = true;
  await using endpoint = serveMetrics(registry, { port: 0, healthy: () => healthy });
  const base = `http://127.0.0.1:${endpoint.port}`;
  const metrics = await fetch(`${base}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(metrics.headers.get("content-type") ?? "", /^text\/plain/);
  const text = await metrics.text();
  assert.match(text, /^process_cpu_seconds_total \d/m);
  assert.match(text, /^process_resident_memory_bytes \d/m);
  assert.match(text, /^# TYPE nodejs_active_handles gauge$/m);
  assert.doesNotMatch(text, /nodejs_active_handles_total/, "a gauge must not end in _total");
  const ok = await fetch(`${base}/health`);
  assert.deepEqual(await ok.json(), { status: "ok" });
  healthy = false;
  const down = await fetch(`${base}/health`);
  assert.equal(down.status, 503);
  await down.body?.cancel();
  const missing = await fetch(`${base}/nope`);
  assert.equal(missing.status, 404);
  await missing.body?.cancel();
});

Deno.test("grpcCodeName names gRPC codes", () => {
  assert.equal(grpcCodeName(0), "OK");
  assert.equal(grpcCodeName(14), "UNAVAILABLE");
  assert.equal(grpcCodeName(99), "99");
});

Deno.test("contextFromTraceparent parses a valid traceparent and ignores invalid ones", () => {
  const value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const ctx = contextFromTraceparent(value);
  const sc = trace.getSpanContext(ctx);
  assert.equal(sc?.traceId, "4bf92f3577b34da6a3ce929d0e0e4736");
  assert.equal(sc?.spanId, "00f067aa0ba902b7");
  assert.equal(sc?.isRemote, true);
  assert.equal(currentTraceparent(ctx), value);
  for (const bad of [undefined, "", "garbage", "00-" + "0".repeat(32) + "-00f067aa0ba902b7-01"]) {
    assert.equal(trace.getSpanContext(contextFromTraceparent(bad)), undefined);
  }
});
