import assert from "node:assert/strict";
import { freePort, freeUdpPort, tempDir } from "../../kernel/testing.ts";
import { DEV_USER, startStack } from "../../gateway/start.ts";
import type { LatencySummary } from "./latency.ts";
import { parseDuration } from "./main.ts";
import { isLoopbackUrl, type LoadReport, runLoad } from "./runner.ts";

function assertOrdered(s: LatencySummary, label: string): void {
  assert.ok(s.count > 0, `${label}: no samples`);
  assert.ok(
    s.min <= s.p50 && s.p50 <= s.p95 && s.p95 <= s.p99 && s.p99 <= s.max && s.min <= s.avg &&
      s.avg <= s.max,
    `${label}: latency summary out of order ${JSON.stringify(s)}`,
  );
}

/** Totals, kinds, status codes and errors of a report add up. */
function assertConsistent(r: LoadReport): void {
  const t = r.totals;
  assert.equal(t.ok + t.errors, t.requests);
  const kinds = Object.values(r.byKind);
  assert.equal(kinds.reduce((n, k) => n + k.requests, 0), t.requests);
  assert.equal(kinds.reduce((n, k) => n + k.errors, 0), t.errors);
  assert.equal(Object.values(r.errorsByKind).reduce((n, v) => n + v, 0), t.errors);
  assert.equal(r.latency.count, t.requests);
  assert.ok(Math.abs(t.throughputPerSecond - t.requests / (r.elapsedMs / 1000)) < 1e-6);
  assertOrdered(r.latency, "all");
  for (const [kind, k] of Object.entries(r.byKind)) assertOrdered(k.latency, kind);
}

async function documentVersions(base: string, token: string, prefix: string): Promise<number> {
  const res = await fetch(`${base}/api/v1/documents?page_size=100`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  const docs = (body.data.documents ?? body.data.items ?? body.data) as Array<
    { name: string; version: number }
  >;
  return docs.filter((d) => d.name.startsWith(prefix)).reduce((n, d) => n + d.version, 0);
}

Deno.test("load tool refuses non-loopback targets and unknown scenarios", async () => {
  assert.equal(isLoopbackUrl("http://127.0.0.1:8080"), true);
  assert.equal(isLoopbackUrl("http://[::1]:8080"), true);
  assert.equal(isLoopbackUrl("http://localhost"), true);
  assert.equal(isLoopbackUrl("http://10.0.0.1:8080"), false);
  assert.equal(isLoopbackUrl("https://example.com"), false);
  await assert.rejects(
    runLoad({ baseUrl: "http://10.1.2.3:8080", scenario: "basic" }),
    /--allow-remote/,
  );
  await assert.rejects(
    runLoad({ baseUrl: "http://127.0.0.1:1", scenario: "nope" }),
    /Unknown scenario/,
  );
  assert.equal(parseDuration("30s"), 30_000);
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("2m"), 120_000);
  assert.throws(() => parseDuration("soon"), RangeError);
});

Deno.test("load tool runs as the README writes it: deno task load -- --list", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "load", "--", "--list"],
    cwd: new URL("../../", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout);
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  for (const name of ["basic", "sustained", "ratelimit", "websocket"]) {
    assert.match(out, new RegExp(`\\b${name}\\b`));
  }
});

Deno.test("load tool: short basic, auth, websocket and ratelimit runs against a real stack report consistent numbers", async (t) => {
  await using dir = await tempDir("aetherflow-loadtest-");
  // Default gateway limits: 100 req/s per IP (burst 200), 50/s per user (burst 100),
  // 100 WS messages/s per socket. basic/auth/websocket stay below them; ratelimit does not.
  await using stack = await startStack({
    dataDir: dir.path,
    gatewayPort: freePort(),
    sessionPort: freePort(),
    statesyncPort: freePort(),
    sessionQuantumPort: freeUdpPort(),
    statesyncQuantumPort: freeUdpPort(),
    transport: "tcp",
    logs: false,
  });
  const base = stack.gatewayUrl;
  const credentials = { username: DEV_USER.username, password: DEV_USER.password };
  const login = await (await fetch(`${base}/api/v1/auth/login`, {
    method: "POST",
    body: JSON.stringify(credentials),
  })).json();
  const token = login.data.access_token as string;

  await t.step("basic: paced REST mix, no errors, ops land in the documents", async () => {
    const r = await runLoad({
      baseUrl: base,
      scenario: "basic",
      durationMs: 2_500,
      rate: 40,
      ...credentials,
    });
    assertConsistent(r);
    assert.equal(r.totals.errors, 0, JSON.stringify(r.errorsByKind));
    assert.deepEqual(Object.keys(r.statusCodes), ["200"]);
    assert.equal(r.statusCodes["200"], r.totals.requests);
    // Paced at 40/s for 2.5 s: about 100 requests (slot 0 is at t=0).
    // (At least half of it even when a parallel suite slows the gateway down.)
    assert.ok(r.totals.requests >= 50 && r.totals.requests <= 101, `${r.totals.requests}`);
    assert.deepEqual(Object.keys(r.byKind), ["auth.me", "doc.get", "doc.list", "op.apply", "ping"]);
    const applied = r.byKind["op.apply"]!.ok;
    assert.equal(await documentVersions(base, token, "load-basic-"), applied);
  });

  await t.step("basic: a count bound stops the run before its time bound", async () => {
    const r = await runLoad({
      baseUrl: base,
      scenario: "basic",
      durationMs: 20_000,
      maxRequests: 25,
      keepAlive: false,
      ...credentials,
    });
    assertConsistent(r);
    assert.equal(r.totals.requests, 25);
    assert.equal(r.config.keepAlive, false);
    assert.ok(r.elapsedMs < 15_000, `${r.elapsedMs} ms`);
  });

  await t.step("auth: login/refresh churn; reused refresh tokens are refused", async () => {
    const r = await runLoad({
      baseUrl: base,
      scenario: "auth",
      durationMs: 4_000,
      concurrency: 3,
      ...credentials,
    });
    assertConsistent(r);
    assert.equal(r.totals.errors, 0, JSON.stringify(r.errorsByKind));
    assert.ok(r.byKind["auth.login"]!.ok >= 3);
    assert.ok(r.byKind["auth.refresh"]!.ok >= 3 * r.byKind["auth.me"]!.ok);
    const reused = r.byKind["auth.refresh_reused"]?.ok ?? 0;
    const afterReuse = r.byKind["auth.refresh_after_reuse"]?.ok ?? 0;
    assert.ok(reused >= 1, "no reuse cycle ran");
    // Every 401 is an expected refusal of a reused token or of its revoked family.
    assert.equal(r.statusCodes["401"], reused + afterReuse);
  });

  await t.step("websocket: every acked op reaches every other subscriber once", async () => {
    const r = await runLoad({
      baseUrl: base,
      scenario: "websocket",
      durationMs: 2_500,
      concurrency: 10,
      documents: 2,
      rate: 100,
      ...credentials,
    });
    assertConsistent(r);
    const ws = r.websocket!;
    assert.equal(r.totals.errors, 0, JSON.stringify(r.errorsByKind));
    assert.ok(ws.opsAcked >= 100, `${ws.opsAcked}`);
    assert.equal(ws.opsAcked, ws.opsSent);
    assert.equal(ws.opsAcked, r.byKind["ws.op"]!.ok);
    // 5 sockets per document: each op has 4 other subscribers.
    assert.equal(ws.deliveriesExpected, ws.opsAcked * 4);
    assert.equal(ws.deliveries, ws.deliveriesExpected);
    assert.equal(ws.fanout.count, ws.deliveries);
    assertOrdered(ws.fanout, "fanout");
    assert.deepEqual(ws.closes, {});
    assert.equal(await documentVersions(base, token, "load-websocket-"), ws.opsAcked);
  });

  await t.step(
    "ratelimit: 429s carry Retry-After and RateLimit headers; accepted ≤ the policy",
    async () => {
      const r = await runLoad({
        baseUrl: base,
        scenario: "ratelimit",
        durationMs: 2_000,
        ...credentials,
      });
      assertConsistent(r);
      const l = r.rateLimit!;
      assert.ok(l.limited > 0, "no 429 seen");
      assert.equal(r.statusCodes["429"], l.limited);
      assert.equal(l.limitedWithRetryAfter, l.limited);
      assert.equal(l.limitedWithPolicy, l.limited);
      assert.equal(l.limitedWithRateLimit, l.limited);
      assert.ok(l.retryAfterMin >= 1);
      assert.equal(l.acceptedWithHeaders, l.accepted);
      assert.ok(l.policies.some((p) => p.startsWith('"user";q=100')), l.policies.join());
      // Per-user bucket: 100 burst + 50/s refill bounds what can be accepted.
      const bound = 100 + 50 * (r.elapsedMs / 1000) + 2;
      assert.ok(l.accepted >= 1 && l.accepted <= bound, `${l.accepted} > ${bound}`);
      assert.equal(r.errorsByKind["http_429"], l.limited);
      assert.equal(r.totals.errors, l.limited);
    },
  );
});
