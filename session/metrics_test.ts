import assert from "node:assert/strict";
import { freePort, metricSample } from "../kernel/testing.ts";
import { createMetricsRegistry, ManualClock } from "../kernel/mod.ts";
import { dial, listen } from "../quantum/mod.ts";
import { SessionClient } from "./client.ts";
import { SessionConfigSchema } from "./config.ts";
import { startSessionService } from "./service.ts";
import { SessionMetrics } from "./metrics.ts";

Deno.test("session /metrics counts sessions created, heartbeats, deletions and expirations", async () => {
  const clock = new ManualClock();
  const config = SessionConfigSchema.parse({
    port: 0,
    storage: "memory",
    metricsPort: freePort(),
    sweepIntervalMs: 86_400_000, // the test sweeps itself, on its manual clock
  });
  await using service = await startSessionService(config, { clock });
  assert.equal(service.metricsPort, config.metricsPort);
  using client = new SessionClient(service.address);
  await client.ready();
  const scrape = async () =>
    await (await fetch(`http://127.0.0.1:${service.metricsPort}/metrics`)).text();
  const a = await client.createSession({ userId: "alice", ttlSeconds: 60 });
  const b = await client.createSession({ userId: "bob", ttlSeconds: 60 });
  await client.createSession({ userId: "carol", ttlSeconds: 600 });
  await client.heartbeat({ sessionId: a.session!.id, ttlSeconds: 600 });
  await client.heartbeat({ sessionId: a.session!.id, ttlSeconds: 600 });
  await client.deleteSession({ sessionId: b.session!.id });
  let text = await scrape();
  assert.equal(metricSample(text, "aetherflow_session_sessions_created_total"), 3);
  assert.equal(metricSample(text, "aetherflow_session_heartbeats_total"), 2);
  assert.equal(metricSample(text, "aetherflow_session_sessions_deleted_total"), 1);
  assert.equal(metricSample(text, "aetherflow_session_sessions", { state: "active" }), 2);
  const handled = "aetherflow_grpc_server_handled_total";
  const svc = { service: "aetherflow.session.v1.SessionService" };
  assert.equal(metricSample(text, handled, { ...svc, method: "CreateSession", code: "OK" }), 3);
  assert.equal(metricSample(text, handled, { ...svc, method: "Heartbeat", code: "OK" }), 2);
  await assert.rejects(
    client.getSession({ selector: { $case: "sessionId", value: b.session!.id } }),
  );
  // a (heartbeat to 600 s) and carol (600 s) both expire after 600 s.
  clock.advance(601_000);
  assert.equal(await service.manager.sweep(), 2);
  text = await scrape();
  assert.equal(metricSample(text, "aetherflow_session_sessions_expired_total"), 2);
  assert.equal(metricSample(text, "aetherflow_session_sessions", { state: "active" }), 0);
  assert.equal(metricSample(text, handled, { ...svc, method: "GetSession", code: "NOT_FOUND" }), 1);
  assert.ok(!text.includes("alice"), "a user id leaked into a label");
});

Deno.test("SessionMetrics.observeQuantum measures a Quantum listener on the session registry", async () => {
  const metrics = new SessionMetrics(createMetricsRegistry({ processMetrics: false }));
  const listener = metrics.observeQuantum(listen({ hostname: "127.0.0.1", port: 0 }));
  try {
    const served = (async () => {
      const conn = (await listener.accept())!;
      let bytes = 0;
      for await (const chunk of conn.readable) bytes += chunk.length;
      await conn.close();
      return bytes;
    })();
    const client = await dial({ hostname: "127.0.0.1", port: listener.addr.port });
    const writer = client.writable.getWriter();
    await writer.write(new Uint8Array(5000).fill(1));
    await writer.close();
    assert.equal(await served, 5000);
    await client.close();
    const text = await metrics.registry.metrics();
    assert.match(text, /^aetherflow_quantum_connections_accepted_total\{listener="session"\} 1$/m);
    assert.match(text, /^aetherflow_quantum_goodput_bytes_total\{listener="session"\} 5000$/m);
  } finally {
    await listener.close();
  }
});
