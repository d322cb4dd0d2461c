import assert from "node:assert/strict";
import { isId } from "../kernel/mod.ts";
import { clientIp, createGateway } from "./app.ts";
import { fakeBackends, testConfig, testUsers } from "./_testing.ts";

async function setup(overrides: Record<string, unknown> = {}) {
  const backends = fakeBackends();
  const gateway = await createGateway({
    config: testConfig(overrides),
    backends,
    users: await testUsers(),
  });
  const call = async (
    method: string,
    path: string,
    options: { body?: unknown; raw?: string; token?: string; headers?: Record<string, string> } =
      {},
  ) => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    let body: string | undefined = options.raw;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers["content-type"] = "application/json";
    }
    const response = await gateway.handler(
      new Request(`http://gw${path}`, { method, headers, body }),
      { remoteAddr: { hostname: "10.0.0.1", port: 1234 } },
    );
    const json = response.headers.get("content-type")?.includes("json")
      ? await response.json()
      : await response.text();
    return { status: response.status, headers: response.headers, json };
  };
  const login = async (username = "alice") => {
    const res = await call("POST", "/api/v1/auth/login", {
      body: { username, password: "password-123" },
    });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    return res.json.data as { access_token: string; refresh_token: string; session_id: string };
  };
  return { gateway, backends, call, login };
}

Deno.test("every response is an envelope with the request id echoed in X-Request-ID", async () => {
  const { call } = await setup();
  for (const path of ["/ping", "/version", "/nope"]) {
    const res = await call("GET", path);
    assert.ok(isId(res.json.request_id));
    assert.equal(res.headers.get("x-request-id"), res.json.request_id);
    assert.deepEqual(Object.keys(res.json).sort(), ["code", "data", "message", "request_id"]);
  }
  const ping = await call("GET", "/ping");
  assert.equal(ping.status, 200);
  assert.equal(ping.json.code, 0);
  assert.equal(ping.json.data.pong, true);
  assert.equal((await call("GET", "/nope")).status, 404);
});

Deno.test("unknown method on a known path answers 405 with Allow", async () => {
  const { call } = await setup();
  const res = await call("DELETE", "/ping");
  assert.equal(res.status, 405);
  assert.equal(res.headers.get("allow"), "GET");
});

Deno.test("/version reports the gateway version", async () => {
  const { call } = await setup();
  const res = await call("GET", "/version");
  assert.equal(res.json.data.name, "aetherflow-gateway");
  assert.match(res.json.data.version, /^\d+\.\d+\.\d+$/);
});

Deno.test("/health is 200 when backends serve and 503 naming the one that is down", async () => {
  const { call, backends } = await setup();
  const ok = await call("GET", "/health");
  assert.equal(ok.status, 200);
  assert.equal(ok.json.data.backends.statesync.status, "SERVING");
  backends.control.statesyncDown = true;
  const down = await call("GET", "/health");
  assert.equal(down.status, 503);
  assert.match(down.json.message, /statesync/);
  assert.equal(down.json.data.backends.statesync.status, "UNREACHABLE");
});

Deno.test("login, me, refresh with rotation, reuse detection and logout", async () => {
  const { call, login } = await setup();
  const tokens = await login();
  const me = await call("GET", "/api/v1/auth/me", { token: tokens.access_token });
  assert.equal(me.status, 200);
  assert.equal(me.json.data.username, "alice");
  assert.equal(me.json.data.session_id, tokens.session_id);

  const refreshed = await call("POST", "/api/v1/auth/refresh", {
    body: { refresh_token: tokens.refresh_token },
  });
  assert.equal(refreshed.status, 200);
  assert.notEqual(refreshed.json.data.refresh_token, tokens.refresh_token);
  assert.equal(refreshed.json.data.session_id, tokens.session_id);

  // Presenting the rotated (old) token again revokes the whole family.
  const reused = await call("POST", "/api/v1/auth/refresh", {
    body: { refresh_token: tokens.refresh_token },
  });
  assert.equal(reused.status, 401);
  const newer = await call("POST", "/api/v1/auth/refresh", {
    body: { refresh_token: refreshed.json.data.refresh_token },
  });
  assert.equal(newer.status, 401, "the newest token of a revoked family is dead too");

  const second = await login();
  const out = await call("POST", "/api/v1/auth/logout", { token: second.access_token });
  assert.equal(out.status, 200);
  const after = await call("GET", "/api/v1/auth/me", { token: second.access_token });
  assert.equal(after.status, 401, "access token of a logged-out session is refused here");
  const refreshAfter = await call("POST", "/api/v1/auth/refresh", {
    body: { refresh_token: second.refresh_token },
  });
  assert.equal(refreshAfter.status, 401);
});

Deno.test("login with a wrong password or unknown user is 401 with the same message", async () => {
  const { call } = await setup();
  const wrong = await call("POST", "/api/v1/auth/login", {
    body: { username: "alice", password: "nope" },
  });
  const unknown = await call("POST", "/api/v1/auth/login", {
    body: { username: "mallory", password: "nope" },
  });
  assert.equal(wrong.status, 401);
  assert.equal(unknown.status, 401);
  assert.equal(wrong.json.message, unknown.json.message);
});

Deno.test("bad input table: malformed JSON, wrong types, unknown fields, auth, size, rate", async () => {
  const { call, login } = await setup({ maxBodyBytes: 256 });
  const { access_token: token } = await login();
  const cases: Array<{
    name: string;
    method: string;
    path: string;
    raw?: string;
    body?: unknown;
    token?: string;
    headers?: Record<string, string>;
    status: number;
    message: RegExp;
  }> = [
    {
      name: "malformed JSON",
      method: "POST",
      path: "/api/v1/auth/login",
      raw: '{"username": "alice",',
      status: 400,
      message: /Malformed JSON/,
    },
    {
      name: "wrong type",
      method: "POST",
      path: "/api/v1/auth/login",
      body: { username: 42, password: "x" },
      status: 400,
      message: /"username"/,
    },
    {
      name: "missing field",
      method: "POST",
      path: "/api/v1/auth/login",
      body: { username: "alice" },
      status: 400,
      message: /"password"/,
    },
    {
      name: "unknown field",
      method: "POST",
      path: "/api/v1/auth/login",
      body: { username: "alice", password: "x", admin: true },
      status: 400,
      message: /Unknown field "admin"/,
    },
    {
      name: "nested wrong type",
      method: "POST",
      path: "/api/v1/documents",
      token,
      body: { name: "d", permissions: { editors: "bob" } },
      status: 400,
      message: /"permissions.editors"/,
    },
    {
      name: "bad enum",
      method: "POST",
      path: "/api/v1/documents",
      token,
      body: { name: "d", type: "spreadsheet" },
      status: 400,
      message: /"type"/,
    },
    {
      name: "bad query parameter",
      method: "GET",
      path: "/api/v1/documents?page_size=lots",
      token,
      status: 400,
      message: /"page_size"/,
    },
    {
      name: "unknown query parameter",
      method: "GET",
      path: "/api/v1/documents?colour=red",
      token,
      status: 400,
      message: /Unknown field "colour"/,
    },
    {
      name: "bad path id",
      method: "GET",
      path: "/api/v1/documents/not-an-id",
      token,
      status: 400,
      message: /document id/,
    },
    {
      name: "missing auth",
      method: "GET",
      path: "/api/v1/auth/me",
      status: 401,
      message: /Missing bearer token/,
    },
    {
      name: "bad token",
      method: "GET",
      path: "/api/v1/auth/me",
      token: "abc.def.ghi",
      status: 401,
      message: /Invalid token/,
    },
    {
      name: "non-admin on admin route",
      method: "GET",
      path: "/breaker/stats",
      token,
      status: 403,
      message: /admin role/,
    },
    {
      name: "too large",
      method: "POST",
      path: "/api/v1/documents",
      token,
      body: { name: "x".repeat(300) },
      status: 413,
      message: /exceeds 256 bytes/,
    },
  ];
  for (const c of cases) {
    const res = await call(c.method, c.path, c);
    assert.equal(res.status, c.status, `${c.name}: ${JSON.stringify(res.json)}`);
    assert.match(res.json.message, c.message, c.name);
    assert.notEqual(res.json.code, 0, c.name);
  }
});

Deno.test("rate limited requests get 429 with Retry-After and RateLimit headers", async () => {
  const { call } = await setup({
    rateLimit: { perIp: { capacity: 3, refillPerSecond: 1 } },
  });
  for (let i = 0; i < 3; i++) {
    const res = await call("GET", "/ping");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("ratelimit")!, new RegExp(`"ip";r=${2 - i};t=\\d+`));
    assert.equal(res.headers.get("ratelimit-policy"), '"ip";q=3;w=3');
  }
  const limited = await call("GET", "/ping");
  assert.equal(limited.status, 429);
  assert.equal(limited.headers.get("retry-after"), "1");
  assert.match(limited.headers.get("ratelimit")!, /"ip";r=0;t=\d+/);
  assert.equal(limited.json.code, 8);
});

Deno.test("per-user rate limit applies across IPs to authenticated routes", async () => {
  const { call, login } = await setup({
    rateLimit: { perUser: { capacity: 2, refillPerSecond: 0.1 } },
  });
  const { access_token: token } = await login();
  assert.equal((await call("GET", "/api/v1/auth/me", { token })).status, 200);
  assert.equal((await call("GET", "/api/v1/auth/me", { token })).status, 200);
  const limited = await call("GET", "/api/v1/auth/me", { token });
  assert.equal(limited.status, 429);
  assert.match(limited.headers.get("ratelimit-policy")!, /"user";q=2/);
  assert.equal(limited.headers.get("retry-after"), "10");
});

Deno.test("session routes: create, get, list, update, heartbeat, delete; others' sessions hidden", async () => {
  const { call, login } = await setup();
  const alice = await login("alice");
  const bob = await login("bob");
  const created = await call("POST", "/api/v1/sessions", {
    token: alice.access_token,
    body: { ttl_seconds: 60, metadata: { device: "laptop" } },
  });
  assert.equal(created.status, 201);
  const id = created.json.data.session.id;
  assert.equal(created.json.data.session.metadata.device, "laptop");
  assert.equal(typeof created.json.data.token, "string");

  const got = await call("GET", `/api/v1/sessions/${id}`, { token: alice.access_token });
  assert.equal(got.json.data.state, "active");
  assert.equal(
    (await call("GET", `/api/v1/sessions/${id}`, { token: bob.access_token })).status,
    404,
  );

  const list = await call("GET", "/api/v1/sessions", { token: alice.access_token });
  assert.ok(
    list.json.data.sessions.every((s: { user_id: string }) => s.user_id === got.json.data.user_id),
  );
  const others = await call("GET", `/api/v1/sessions?user_id=someone`, {
    token: alice.access_token,
  });
  assert.equal(others.status, 403);

  const patched = await call("PATCH", `/api/v1/sessions/${id}`, {
    token: alice.access_token,
    body: { state: "idle" },
  });
  assert.equal(patched.json.data.state, "idle");
  const beat = await call("POST", `/api/v1/sessions/${id}/heartbeat`, {
    token: alice.access_token,
    body: { ttl_seconds: 120 },
  });
  assert.equal(beat.status, 200);
  assert.ok(beat.json.data.expires_at > Date.now() + 100_000);
  const deleted = await call("DELETE", `/api/v1/sessions/${id}`, { token: alice.access_token });
  assert.equal(deleted.status, 200);
  assert.equal(
    (await call("GET", `/api/v1/sessions/${id}`, { token: alice.access_token })).status,
    404,
  );
});

Deno.test("document routes: CRUD, apply op, history, locks, conflicts, stats", async () => {
  const { call, login, backends } = await setup();
  const { access_token: token } = await login();
  const created = await call("POST", "/api/v1/documents", {
    token,
    body: { name: "notes", type: "text" },
  });
  assert.equal(created.status, 201);
  const id = created.json.data.id;
  assert.equal(created.json.data.type, "text");
  assert.equal(created.json.data.version, 0);
  assert.ok(backends.control.deadlines.get("createDocument")! > Date.now(), "deadline passed on");

  const applied = await call("POST", `/api/v1/documents/${id}/operations`, {
    token,
    body: {
      base_version: 0,
      client_op_id: "c1",
      components: [{ type: "text_insert", path: ["text"], offset: 0, text: "hello" }],
    },
  });
  assert.equal(applied.status, 200, JSON.stringify(applied.json));
  assert.equal(applied.json.data.version, 1);
  assert.deepEqual(applied.json.data.operation.components[0], {
    type: "text_insert",
    path: ["text"],
    offset: 0,
    text: "hello",
  });

  const got = await call("GET", `/api/v1/documents/${id}`, { token });
  assert.deepEqual(got.json.data.content, { text: "hello" });
  assert.equal(got.json.data.stale, false);

  const list = await call("GET", "/api/v1/documents", { token });
  assert.equal(list.json.data.documents.length, 1);
  const renamed = await call("PATCH", `/api/v1/documents/${id}`, { token, body: { name: "n2" } });
  assert.equal(renamed.json.data.name, "n2");

  const history = await call("GET", `/api/v1/documents/${id}/history?from_version=0`, { token });
  assert.equal(history.json.data.operations.length, 1);
  assert.equal(history.json.data.operations[0].version, 1);

  const lock = await call("POST", `/api/v1/documents/${id}/locks`, {
    token,
    body: { path: ["text"], ttl_ms: 1000 },
  });
  assert.equal(lock.status, 201);
  assert.deepEqual(lock.json.data.path, ["text"]);
  const released = await call("DELETE", `/api/v1/documents/${id}/locks/${lock.json.data.id}`, {
    token,
  });
  assert.equal(released.status, 200);

  const conflicts = await call("GET", `/api/v1/documents/${id}/conflicts`, { token });
  assert.deepEqual(conflicts.json.data.conflicts, []);
  const resolve = await call(
    "POST",
    `/api/v1/documents/${id}/conflicts/${lock.json.data.id}/resolve`,
    { token, body: { side: "applied" } },
  );
  assert.equal(resolve.status, 404);
  const badResolve = await call(
    "POST",
    `/api/v1/documents/${id}/conflicts/${lock.json.data.id}/resolve`,
    { token, body: { side: "both" } },
  );
  assert.equal(badResolve.status, 400);

  const stats = await call("GET", "/api/v1/documents/stats", { token });
  assert.equal(stats.json.data.documents, 1);
  assert.equal(stats.json.data.operations, 1);

  assert.equal((await call("DELETE", `/api/v1/documents/${id}`, { token })).status, 200);
  assert.equal((await call("GET", `/api/v1/documents/${id}`, { token })).status, 404);
});

Deno.test("document read falls back to the cached copy when statesync is unavailable", async () => {
  const { call, login, backends } = await setup();
  const { access_token: token } = await login();
  const created = await call("POST", "/api/v1/documents", { token, body: { name: "d" } });
  const id = created.json.data.id;
  await call("GET", `/api/v1/documents/${id}`, { token });
  backends.control.statesyncDown = true;
  const cached = await call("GET", `/api/v1/documents/${id}`, { token });
  assert.equal(cached.status, 200);
  assert.equal(cached.json.data.stale, true);
  assert.equal(cached.json.data.id, id);
  const list = await call("GET", "/api/v1/documents", { token });
  assert.equal(list.status, 503, "no fallback for other calls: fail fast");
});

Deno.test("breaker stats and reset are admin only", async () => {
  const { call, login } = await setup();
  const admin = await login("admin");
  const stats = await call("GET", "/breaker/stats", { token: admin.access_token });
  assert.equal(stats.status, 200);
  assert.ok(Array.isArray(stats.json.data.breakers));
  const reset = await call("POST", "/breaker/reset", { token: admin.access_token, body: {} });
  assert.equal(reset.status, 200);
  const missing = await call("POST", "/breaker/reset", {
    token: admin.access_token,
    body: { name: "nope/Nope" },
  });
  assert.equal(missing.status, 404);
  const alice = await login("alice");
  assert.equal(
    (await call("POST", "/breaker/reset", { token: alice.access_token, body: {} })).status,
    403,
  );
});

Deno.test("/ws without an upgrade header is 426; /ws/stats needs auth", async () => {
  const { call, login } = await setup();
  assert.equal((await call("GET", "/ws")).status, 426);
  assert.equal((await call("GET", "/ws/stats")).status, 401);
  const { access_token: token } = await login();
  const stats = await call("GET", "/ws/stats", { token });
  assert.equal(stats.json.data.connections, 0);
});

Deno.test("a handler overrunning its route budget answers 504 and aborts", async () => {
  const backends = fakeBackends();
  let release!: () => void;
  const blocked = new Promise<void>((resolve) => release = resolve);
  backends.statesync.getStats = async () => {
    await blocked;
    throw new Error("should not be observed");
  };
  const gateway = await createGateway({
    // Long enough for the login's password hash on a loaded machine; the stats call never ends.
    config: testConfig({ requestTimeoutMs: 1000 }),
    backends,
    users: await testUsers(),
  });
  const login = await gateway.handler(
    new Request("http://gw/api/v1/auth/login", {
      method: "POST",
      body: JSON.stringify({ username: "alice", password: "password-123" }),
    }),
  );
  const { data } = await login.json();
  const res = await gateway.handler(
    new Request("http://gw/api/v1/documents/stats", {
      headers: { authorization: `Bearer ${data.access_token}` },
    }),
  );
  assert.equal(res.status, 504);
  assert.match((await res.json()).message, /1000 ms budget/);
  release();
});

Deno.test("/metrics exposes request counts by route, breaker state and WebSocket gauges", async () => {
  const { call, backends } = await setup();
  await call("GET", "/ping");
  await call("GET", "/ping");
  backends.control.statesyncDown = true;
  const res = await call("GET", "/metrics");
  assert.equal(res.status, 200);
  const text = res.json as string;
  assert.match(
    text,
    /aetherflow_gateway_http_requests_total\{method="GET",route="\/ping",status="200"\} 2/,
  );
  assert.match(text, /aetherflow_gateway_http_request_duration_seconds_bucket\{le="0.001"/);
  assert.match(text, /aetherflow_gateway_websocket_connections 0/);
  assert.ok(!/alice|user_id/.test(text), "no user ids in labels");
});

Deno.test("an incoming traceparent and the request id are passed on to backend calls", async () => {
  const { call, login, backends } = await setup();
  const { access_token: token } = await login();
  const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const res = await call("GET", "/api/v1/documents/stats", { token, headers: { traceparent } });
  assert.equal(res.status, 200);
  const options = backends.control.options.get("getStats") as Record<string, unknown>;
  // Same trace; the span id is the gateway's own span when OTEL_DENO=true.
  assert.equal(String(options.traceparent).split("-")[1], traceparent.split("-")[1]);
  assert.equal(options.requestId, res.json.request_id);
  await call("GET", "/api/v1/documents/stats", { token, headers: { traceparent: "junk" } });
  const after = backends.control.options.get("getStats") as Record<string, unknown>;
  assert.notEqual(after.traceparent, "junk", "malformed trace context is not forwarded");
  assert.ok(
    after.traceparent === undefined ||
      /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/.test(String(after.traceparent)),
  );
});

Deno.test("client IP: the peer by default, X-Forwarded-For only through trusted proxy hops", () => {
  const req = new Request("http://gw/", {
    headers: { "x-forwarded-for": "6.6.6.6, 1.2.3.4, 10.0.0.2" },
  });
  assert.equal(
    clientIp(req, { peer: "10.0.0.9", trustedHops: 0 }),
    "10.0.0.9",
    "spoofable header ignored",
  );
  assert.equal(clientIp(req, { peer: "10.0.0.9", trustedHops: 1 }), "10.0.0.2");
  assert.equal(clientIp(req, { peer: "10.0.0.9", trustedHops: 2 }), "1.2.3.4");
  assert.equal(
    clientIp(new Request("http://gw/"), { peer: "10.0.0.9", trustedHops: 1 }),
    "10.0.0.9",
  );
});

Deno.test("per-IP rate limits apply to the forwarded client behind a trusted proxy", async () => {
  const { call } = await setup({
    trustedProxyHops: 1,
    rateLimit: { perIp: { capacity: 1, refillPerSecond: 0.01 } },
  });
  const from = (ip: string) => call("GET", "/ping", { headers: { "x-forwarded-for": ip } });
  assert.equal((await from("1.1.1.1")).status, 200);
  assert.equal((await from("1.1.1.1")).status, 429);
  assert.equal((await from("2.2.2.2")).status, 200, "another client behind the same proxy");
});
