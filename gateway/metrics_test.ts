import assert from "node:assert/strict";
import { createMetricsRegistry } from "../kernel/mod.ts";
import { createGateway } from "./app.ts";
import { fakeBackends, testConfig, testUsers } from "./_testing.ts";

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

Deno.test("gateway metrics count rate-limit rejections by policy and requests in flight", async () => {
  const backends = fakeBackends();
  let release!: () => void;
  const blocked = new Promise<void>((resolve) => release = resolve);
  let entered!: () => void;
  const inside = new Promise<void>((resolve) => entered = resolve);
  const original = backends.statesync.getStats;
  backends.statesync.getStats = async (...args) => {
    entered();
    await blocked;
    return await original(...args);
  };
  const registry = createMetricsRegistry({ processMetrics: false });
  const gateway = await createGateway({
    metricsRegistry: registry,
    config: testConfig({
      rateLimit: {
        perIp: { capacity: 4, refillPerSecond: 0.001 },
        perUser: { capacity: 100, refillPerSecond: 50 },
      },
    }),
    backends,
    users: await testUsers(),
  });
  const call = (path: string, init: RequestInit = {}) =>
    gateway.handler(new Request(`http://gw${path}`, init), {
      remoteAddr: { hostname: "10.0.0.9", port: 1 },
    });
  const metrics = async () => await (await call("/metrics")).text();
  try {
    const login = await call("/api/v1/auth/login", {
      method: "POST",
      body: JSON.stringify({ username: "alice", password: "password-123" }),
    });
    const token = (await login.json()).data.access_token;
    // One request held inside the handler: in flight while /metrics is read.
    const slow = call("/api/v1/documents/stats", { headers: { authorization: `Bearer ${token}` } });
    await inside;
    const during = await metrics(); // tokens used: login, stats, this scrape = 3 of 4
    assert.equal(value(during, "aetherflow_gateway_http_requests_in_flight"), 2, "stats + scrape");
    release();
    assert.equal((await slow).status, 200);
    // Spend the rest of this IP's 4-token bucket (refilled ~never): later calls get 429.
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const response = await call("/api/v1/auth/me", {
        headers: { authorization: `Bearer ${token}` },
      });
      statuses.push(response.status);
      await response.body?.cancel();
    }
    const rejected = statuses.filter((status) => status === 429).length;
    assert.ok(rejected >= 2 && statuses.at(-1) === 429, statuses.join(","));
    const text = await registry.metrics();
    assert.equal(value(text, "aetherflow_gateway_rate_limited_total", { policy: "ip" }), rejected);
    assert.equal(value(text, "aetherflow_gateway_rate_limited_total", { policy: "user" }), 0);
    assert.equal(value(text, "aetherflow_gateway_http_requests_in_flight"), 0);
  } finally {
    await gateway.close();
  }
});
