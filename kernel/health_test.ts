import assert from "node:assert/strict";
import { credentials, Server, type ServiceError, status } from "@grpc/grpc-js";
import {
  type HealthCheckResponse,
  HealthCheckResponse_ServingStatus as Wire,
  HealthClient,
} from "../proto/gen/health.ts";
import { addHealthService, HealthState } from "./health.ts";
import { listenGuarded } from "./grpc_guard.ts";

const NAME = "aetherflow.test.v1.TestService";

async function withHealth(
  health: HealthState,
  run: (client: HealthClient) => Promise<void>,
): Promise<void> {
  const server = new Server();
  addHealthService(server, health);
  const listener = await listenGuarded(server, { hostname: "127.0.0.1", port: 0 });
  const client = new HealthClient(`127.0.0.1:${listener.port}`, credentials.createInsecure());
  try {
    await run(client);
  } finally {
    client.close();
    await listener.close();
    server.forceShutdown();
  }
}

function check(client: HealthClient, service: string): Promise<Wire> {
  return new Promise((resolve, reject) => {
    client.check(
      { service },
      (error, response) => error ? reject(error) : resolve(response.status),
    );
  });
}

Deno.test("HealthState answers Check for the server and registered services, NOT_FOUND for others", async () => {
  const health = new HealthState([NAME]);
  await withHealth(health, async (client) => {
    assert.equal(await check(client, ""), Wire.SERVING);
    assert.equal(await check(client, NAME), Wire.SERVING);
    await assert.rejects(check(client, "no.such.Service"), (error: ServiceError) => {
      assert.equal(error.code, status.NOT_FOUND);
      return true;
    });
    health.setStatus("late.Service", "NOT_SERVING");
    assert.equal(await check(client, "late.Service"), Wire.NOT_SERVING);
    assert.equal(health.status("late.Service"), "NOT_SERVING");
    assert.equal(health.status("no.such.Service"), "SERVICE_UNKNOWN");
  });
});

Deno.test("HealthState pushes changes to Watch streams of that service and ends them on shutdown", async () => {
  const health = new HealthState([NAME]);
  await withHealth(health, async (client) => {
    const watch = (service: string, onData: (status: Wire) => void) => {
      const seen: Wire[] = [];
      const stream = client.watch({ service });
      const ended = new Promise<Wire[]>((resolve, reject) => {
        stream.on("data", (message: HealthCheckResponse) => {
          seen.push(message.status);
          onData(message.status);
        });
        stream.on("end", () => resolve(seen));
        stream.on("error", reject);
      });
      return ended;
    };
    const unknownFirst = Promise.withResolvers<void>();
    const unknown = watch("other.Service", () => unknownFirst.resolve());
    await unknownFirst.promise;
    const named = watch(NAME, (status) => {
      // Once the watcher saw SERVING: flip the other service, then shut down.
      if (status === Wire.SERVING) {
        health.setStatus("other.Service", "SERVING");
        health.shutdown();
      }
    });
    assert.deepEqual(await named, [Wire.SERVING, Wire.NOT_SERVING]);
    assert.deepEqual(await unknown, [Wire.SERVICE_UNKNOWN, Wire.SERVING, Wire.NOT_SERVING]);
    assert.equal(await check(client, ""), Wire.NOT_SERVING);
  });
});
