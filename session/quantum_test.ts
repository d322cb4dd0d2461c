import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { freeUdpPort, metricSample, tempDir } from "../kernel/testing.ts";
import { startQuantumTunnel } from "../quantum/mod.ts";
import { SessionState } from "../proto/gen/session.ts";
import { SessionClient } from "./client.ts";
import { SessionConfigSchema } from "./config.ts";
import { startSessionService } from "./service.ts";

Deno.test("gRPC over Quantum: the session API end to end through a Quantum tunnel", async () => {
  await using dir = await tempDir("aetherflow-session-");
  const quantumPort = freeUdpPort();
  await using service = await startSessionService(
    SessionConfigSchema.parse({ port: 0, quantumPort, dataDir: dir.path }),
  );
  assert.equal(service.quantumPort, quantumPort);
  const tunnel = await startQuantumTunnel({ hostname: "127.0.0.1", port: quantumPort });
  const client = new SessionClient(tunnel.address);
  try {
    const created = await client.createSession({ userId: "quantum-user", ttlSeconds: 60 });
    const id = created.session!.id;
    const byToken = await client.getSession({ selector: { $case: "token", value: created.token } });
    assert.equal(byToken.id, id);
    const beat = await client.heartbeat({ sessionId: id, ttlSeconds: 120 });
    assert.ok(beat.session!.expiresAt >= created.session!.expiresAt);
    const idle = await client.updateSession({
      sessionId: id,
      updateMask: ["state"],
      state: SessionState.SESSION_STATE_IDLE,
    });
    assert.equal(idle.state, SessionState.SESSION_STATE_IDLE);
    const rotated = await client.rotateToken({ token: created.token });
    assert.notEqual(rotated.token, created.token);
    await assert.rejects(
      client.getSession({ selector: { $case: "sessionId", value: "nope" } }),
      (error: { code: number }) => error.code === status.INVALID_ARGUMENT,
    );
    // The same session is visible over TCP: one service, two transports.
    using tcp = new SessionClient(service.address);
    const listed = await tcp.listSessions({ userId: "quantum-user" });
    assert.deepEqual(listed.sessions.map((s) => s.id), [id]);
    // Many calls over one Quantum connection.
    const many = await Promise.all(
      Array.from(
        { length: 50 },
        () => client.getSession({ selector: { $case: "sessionId", value: id } }),
      ),
    );
    assert.ok(many.every((s) => s.id === id));
    // The Quantum listener is measured on the service's own registry.
    const text = await service.metrics.registry.metrics();
    assert.equal(metricSample(text, "aetherflow_quantum_connections_accepted_total"), 1);
  } finally {
    client.close();
    await tunnel.close();
  }
});
