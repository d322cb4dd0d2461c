import assert from "node:assert/strict";
import { credentials, Server, type ServiceError, status } from "@grpc/grpc-js";
import {
  HealthCheckResponse_ServingStatus as Serving,
  HealthClient,
  HealthService,
} from "../proto/gen/health.ts";
import { CallGate, drainCalls, gateHandlers } from "./call_gate.ts";
import { listenGuarded } from "./grpc_guard.ts";

Deno.test("CallGate refuses calls once closed and reports idle when the last one leaves", async () => {
  const gate = new CallGate();
  assert.equal(await gate.whenIdle(1000), true);
  assert.ok(gate.enter());
  assert.ok(gate.enter());
  gate.close();
  assert.equal(gate.enter(), false);
  const idle = gate.whenIdle(60_000);
  gate.leave();
  assert.equal(gate.inFlight, 1);
  gate.leave();
  assert.equal(await idle, true);
});

Deno.test("CallGate.whenIdle gives up after its timeout", async () => {
  const gate = new CallGate();
  gate.enter();
  assert.equal(await gate.whenIdle(1), false);
  gate.leave();
});

Deno.test("gateHandlers counts unary and streaming calls in flight and refuses new ones with UNAVAILABLE once closed", async () => {
  const gate = new CallGate();
  let releaseCheck!: () => void;
  const checkStarted = Promise.withResolvers<void>();
  const watchStarted = Promise.withResolvers<{ end(): void }>();
  const server = new Server();
  server.addService(
    HealthService,
    gateHandlers(
      HealthService,
      {
        check: (_call: unknown, callback: (e: null, r: { status: number }) => void) => {
          checkStarted.resolve();
          releaseCheck = () => callback(null, { status: Serving.SERVING });
        },
        watch: (call: { write(r: { status: number }): void; end(): void }) => {
          call.write({ status: Serving.SERVING });
          watchStarted.resolve(call);
        },
      },
      gate,
      { message: "Test service is shutting down" },
    ),
  );
  const listener = await listenGuarded(server, { hostname: "127.0.0.1", port: 0 });
  const client = new HealthClient(`127.0.0.1:${listener.port}`, credentials.createInsecure());
  try {
    const checked = new Promise<number>((resolve, reject) => {
      client.check({ service: "" }, (error, response) => {
        if (error) reject(error);
        else resolve(response.status);
      });
    });
    const watch = client.watch({ service: "" });
    const watchEnded = new Promise<void>((resolve, reject) => {
      watch.on("data", () => {});
      watch.on("end", resolve);
      watch.on("error", reject);
    });
    await checkStarted.promise;
    const watchCall = await watchStarted.promise;
    assert.equal(gate.inFlight, 2);
    gate.close();
    const refused = await new Promise<ServiceError>((resolve, reject) => {
      client.check({ service: "" }, (error) => error ? resolve(error) : reject(new Error("ok")));
    });
    assert.equal(refused.code, status.UNAVAILABLE);
    assert.match(refused.details, /Test service is shutting down/);
    const refusedStream = await new Promise<ServiceError>((resolve, reject) => {
      const stream = client.watch({ service: "" });
      stream.on("data", () => {});
      stream.on("error", resolve);
      stream.on("end", () => reject(new Error("stream ended without an error")));
    });
    assert.equal(refusedStream.code, status.UNAVAILABLE);
    const idle = gate.whenIdle(60_000);
    releaseCheck();
    assert.equal(await checked, Serving.SERVING);
    watchCall.end();
    await watchEnded;
    assert.equal(await idle, true);
    assert.equal(gate.inFlight, 0);
  } finally {
    client.close();
    await listener.close();
    server.forceShutdown();
  }
});

Deno.test("drainCalls() closes the gate, waits for the last call and reports whether all finished", async () => {
  const gate = new CallGate();
  assert.ok(gate.enter());
  const drained = drainCalls(gate, { timeoutMs: 60_000, lingerMs: 0 });
  assert.equal(gate.closed, true);
  assert.equal(gate.enter(), false);
  gate.leave();
  assert.equal(await drained, true);

  const stuck = new CallGate();
  stuck.enter();
  assert.equal(await drainCalls(stuck, { timeoutMs: 1, lingerMs: 1 }), false);
  stuck.leave();
});
