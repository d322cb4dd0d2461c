import assert from "node:assert/strict";
import { createLogger, isId } from "../kernel/mod.ts";
import { createGateway } from "./app.ts";
import { fakeBackends, testConfig, testUsers } from "./_testing.ts";

const PASSWORD = "password-123";

Deno.test("logs are JSON lines with time, level, service, request id and trace id, and never hold a password or token", async () => {
  const lines: string[] = [];
  const logger = createLogger({ service: "gateway", level: "debug", write: (l) => lines.push(l) });
  const gateway = await createGateway({
    config: testConfig(),
    backends: fakeBackends(),
    users: await testUsers(),
    logger,
  });
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  const call = async (
    method: string,
    path: string,
    options: { body?: unknown; token?: string } = {},
  ) => {
    const headers: Record<string, string> = {
      traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
    };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    if (options.body !== undefined) headers["content-type"] = "application/json";
    const response = await gateway.handler(
      new Request(`http://gw${path}`, {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
      }),
      { remoteAddr: { hostname: "10.0.0.1", port: 1234 } },
    );
    return { status: response.status, json: await response.json() };
  };
  const secrets: string[] = [];
  try {
    // A failed login (the password in the body), a login, me, a refresh, a reuse of the old
    // refresh token (revokes the grant) and a logout.
    const wrong = await call("POST", "/api/v1/auth/login", {
      body: { username: "alice", password: `${PASSWORD}-wrong` },
    });
    assert.equal(wrong.status, 401);
    const login = await call("POST", "/api/v1/auth/login", {
      body: { username: "alice", password: PASSWORD },
    });
    assert.equal(login.status, 200, JSON.stringify(login.json));
    const first = login.json.data as { access_token: string; refresh_token: string };
    secrets.push(first.access_token, first.refresh_token);
    assert.equal((await call("GET", "/api/v1/auth/me", { token: first.access_token })).status, 200);
    const refreshed = await call("POST", "/api/v1/auth/refresh", {
      body: { refresh_token: first.refresh_token },
    });
    assert.equal(refreshed.status, 200, JSON.stringify(refreshed.json));
    const second = refreshed.json.data as { access_token: string; refresh_token: string };
    secrets.push(second.access_token, second.refresh_token);
    const reuse = await call("POST", "/api/v1/auth/refresh", {
      body: { refresh_token: first.refresh_token },
    });
    assert.equal(reuse.status, 401);
    await call("POST", "/api/v1/auth/logout", { token: second.access_token });
  } finally {
    await gateway.close();
  }

  assert.ok(lines.length >= 6, `${lines.length} log lines`);
  const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  for (const record of records) {
    assert.equal(typeof record.time, "string");
    assert.ok(!Number.isNaN(Date.parse(record.time as string)), "time is ISO 8601");
    assert.ok(["debug", "info", "warn", "error"].includes(record.level as string));
    assert.equal(record.service, "gateway");
    assert.equal(typeof record.message, "string");
  }
  const access = records.filter((r) => r.message === "HTTP request");
  assert.equal(access.length, 6, "one access record per request");
  for (const record of access) {
    assert.ok(isId(record.request_id), "request id on every access record");
    assert.equal(record.trace_id, traceId, "trace id of the request's traceparent");
  }
  assert.deepEqual(
    access.map((r) => `${r.route} ${r.status}`),
    [
      "/api/v1/auth/login 401",
      "/api/v1/auth/login 200",
      "/api/v1/auth/me 200",
      "/api/v1/auth/refresh 200",
      "/api/v1/auth/refresh 401",
      "/api/v1/auth/logout 200",
    ],
  );
  const text = lines.join("\n");
  for (const secret of [PASSWORD, "Bearer "]) {
    assert.ok(!text.includes(secret), `logs contain ${JSON.stringify(secret)}`);
  }
  // Not one of the tokens, nor any 24-character piece of one (e.g. a JWT's signature).
  assert.equal(secrets.length, 4);
  for (const token of secrets) {
    for (let i = 0; i + 24 <= token.length; i += 12) {
      assert.ok(!text.includes(token.slice(i, i + 24)), "logs contain a piece of a token");
    }
  }
});
