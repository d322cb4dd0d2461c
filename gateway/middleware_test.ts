import assert from "node:assert/strict";
import { isId, newId } from "../kernel/mod.ts";
import { compose, type Handler, newContext, okResponse } from "./_http.ts";
import { accessLog } from "./access_log.ts";
import { bodyLimit } from "./body_limit.ts";
import { cors } from "./cors.ts";
import { TokenBuckets } from "./rate_limit.ts";
import { requestId } from "./request_id.ts";
import { Router } from "./router.ts";
import { createLogger } from "../kernel/mod.ts";

const echo: Handler = async (req, ctx) => okResponse(ctx, { body: await req.text() });

Deno.test("request id: a valid incoming UUIDv7 is honoured, anything else replaced", async () => {
  const app = compose([requestId()], echo);
  const incoming = newId();
  const kept = await app(
    new Request("http://x/", { headers: { "x-request-id": incoming } }),
    newContext({ requestId: "" }),
  );
  assert.equal(kept.headers.get("x-request-id"), incoming);
  assert.equal((await kept.json()).request_id, incoming);
  const replaced = await app(
    new Request("http://x/", { headers: { "x-request-id": "<script>" } }),
    newContext({ requestId: "" }),
  );
  const id = replaced.headers.get("x-request-id")!;
  assert.ok(isId(id));
  assert.notEqual(id, "<script>");
});

Deno.test("access log: one JSON record per request with status, route and duration", async () => {
  const lines: string[] = [];
  const logger = createLogger({ service: "gateway", write: (line) => lines.push(line) });
  const app = compose([requestId(), accessLog({ logger })], echo);
  await app(
    new Request("http://x/api/thing?q=1", { method: "POST", body: "hi" }),
    newContext({ requestId: "", ip: "1.2.3.4" }),
  );
  assert.equal(lines.length, 1);
  const record = JSON.parse(lines[0]!);
  assert.equal(record.method, "POST");
  assert.equal(record.path, "/api/thing");
  assert.equal(record.status, 200);
  assert.equal(record.client_ip, "1.2.3.4");
  assert.ok(isId(record.request_id));
  assert.equal(typeof record.duration_ms, "number");
});

Deno.test("cors: allowed origins get headers and preflight answers; others get none", async () => {
  const app = compose([cors({ origins: ["https://app.example"] })], echo);
  const ctx = () => newContext({ requestId: newId() });
  const ok = await app(
    new Request("http://x/", { headers: { origin: "https://app.example" } }),
    ctx(),
  );
  assert.equal(ok.headers.get("access-control-allow-origin"), "https://app.example");
  const evil = await app(
    new Request("http://x/", { headers: { origin: "https://evil.example" } }),
    ctx(),
  );
  assert.equal(evil.headers.get("access-control-allow-origin"), null);
  const preflight = await app(
    new Request("http://x/", {
      method: "OPTIONS",
      headers: {
        origin: "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization",
      },
    }),
    ctx(),
  );
  assert.equal(preflight.status, 204);
  assert.match(preflight.headers.get("access-control-allow-methods")!, /POST/);
  assert.equal(preflight.headers.get("access-control-allow-headers"), "authorization");
  const any = compose([cors({ origins: ["*"] })], echo);
  const star = await any(new Request("http://x/", { headers: { origin: "https://a.b" } }), ctx());
  assert.equal(star.headers.get("access-control-allow-origin"), "*");
});

Deno.test("body limit: declared and streamed oversize bodies are 413; small ones pass", async () => {
  const app = compose([bodyLimit({ maxBytes: 10 })], echo);
  const ctx = () => newContext({ requestId: newId() });
  const small = await app(new Request("http://x/", { method: "POST", body: "0123456789" }), ctx());
  assert.equal((await small.json()).data.body, "0123456789");
  const declared = await app(
    new Request("http://x/", { method: "POST", body: "0123456789A" }),
    ctx(),
  );
  assert.equal(declared.status, 413);
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let i = 0; i < 5; i++) controller.enqueue(new Uint8Array(4));
      controller.close();
    },
  });
  const streamed = await app(new Request("http://x/", { method: "POST", body: stream }), ctx());
  assert.equal(streamed.status, 413);
  assert.match((await streamed.json()).message, /exceeds 10 bytes/);
});

Deno.test("token buckets: refill over time, report retry-after, and keep memory bounded", () => {
  const buckets = new TokenBuckets({ capacity: 2, refillPerSecond: 1, maxKeys: 3 });
  assert.ok(buckets.take("a", 0).allowed);
  assert.ok(buckets.take("a", 0).allowed);
  const denied = buckets.take("a", 0);
  assert.equal(denied.allowed, false);
  assert.equal(denied.retryAfterSeconds, 1);
  assert.ok(!buckets.take("a", 500).allowed);
  assert.ok(buckets.take("a", 1_000).allowed, "one token back after 1 s");
  for (let i = 0; i < 100; i++) buckets.take(`k${i}`, 2_000);
  assert.ok(buckets.size <= 3);
  buckets.delete("k99");
  assert.equal(buckets.size, 2);
  assert.ok(buckets.take("k99", 2_000).allowed, "a deleted key starts with a full bucket");
  assert.throws(() => new TokenBuckets({ capacity: 0, refillPerSecond: 1 }), RangeError);
});

Deno.test("router: static segments beat parameters; params are decoded", () => {
  const h: Handler = (_r, ctx) => Promise.resolve(okResponse(ctx, null));
  const router = new Router([
    { method: "GET", path: "/d/:id", auth: "none", handler: h },
    { method: "GET", path: "/d/stats", auth: "none", handler: h },
    { method: "POST", path: "/d/:id/x/:y", auth: "none", handler: h },
  ]);
  const stats = router.match("GET", "/d/stats");
  assert.ok(stats && "route" in stats && stats.route.path === "/d/stats");
  const param = router.match("GET", "/d/a%20b");
  assert.ok(param && "route" in param);
  assert.deepEqual(param.params, { id: "a b" });
  assert.deepEqual(router.match("PUT", "/d/1"), { allowed: ["GET"] });
  assert.equal(router.match("GET", "/zzz"), undefined);
  const two = router.match("POST", "/d/1/x/2");
  assert.ok(two && "route" in two);
  assert.deepEqual(two.params, { id: "1", y: "2" });
});
