import assert from "node:assert/strict";
import { ApiError, RestAuth } from "./auth.ts";
import { ManualClock } from "./clock.ts";

/** A fake gateway auth API: rotates refresh tokens and rejects reuse, like the real one. */
function fakeApi(clock: ManualClock, ttlMs = 300_000) {
  let n = 0;
  let current = "";
  const calls: string[] = [];
  const issue = () => {
    n++;
    current = `refresh-${n}`;
    return {
      access_token: `access-${n}`,
      expires_at: clock.now() + ttlMs,
      refresh_token: current,
      session_id: "s1",
      user: { id: "u1", username: "dev", role: "admin" },
    };
  };
  const fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const path = new URL(String(input)).pathname;
    calls.push(path);
    const body = JSON.parse(String(init?.body ?? "{}"));
    await Promise.resolve();
    if (path === "/api/v1/auth/login") {
      if (body.password !== "pw") {
        return Response.json({ code: 16, message: "Invalid username or password" }, {
          status: 401,
        });
      }
      return Response.json({ code: 0, data: issue() });
    }
    if (path === "/api/v1/auth/refresh") {
      if (body.refresh_token !== current) {
        current = ""; // reuse revokes the whole session
        return Response.json({ code: 16, message: "Refresh token rejected" }, { status: 401 });
      }
      return Response.json({ code: 0, data: issue() });
    }
    return Response.json({ code: 0, data: { path } });
  };
  return { fetch: fetch as typeof globalThis.fetch, calls };
}

Deno.test("RestAuth logs in, reuses a fresh token and refreshes one about to expire", async () => {
  const clock = new ManualClock();
  const api = fakeApi(clock);
  const auth = new RestAuth("http://gw/", { fetch: api.fetch, clock });
  const user = await auth.login("dev", "pw");
  assert.equal(user.username, "dev");
  assert.equal(auth.sessionId, "s1");
  assert.equal((await auth.getToken()).token, "access-1");
  clock.advance(300_000 - 31_000);
  assert.equal((await auth.getToken()).token, "access-1");
  clock.advance(2_000); // inside the 30 s margin
  assert.equal((await auth.getToken()).token, "access-2");
  assert.deepEqual(api.calls, ["/api/v1/auth/login", "/api/v1/auth/refresh"]);
});

Deno.test("RestAuth shares one refresh between concurrent callers (a reused refresh token would revoke the session)", async () => {
  const clock = new ManualClock();
  const api = fakeApi(clock);
  const auth = new RestAuth("http://gw", { fetch: api.fetch, clock });
  await auth.login("dev", "pw");
  const tokens = await Promise.all([auth.refresh(), auth.refresh(), auth.getToken()]);
  assert.deepEqual(tokens.map((t) => t.token), ["access-2", "access-2", "access-1"]);
  assert.equal(api.calls.filter((c) => c.endsWith("/refresh")).length, 1);
  assert.equal((await auth.refresh()).token, "access-3", "the rotated token works next time");
});

Deno.test("RestAuth margin is at most a third of a short token's lifetime", async () => {
  const clock = new ManualClock();
  const api = fakeApi(clock, 3_000);
  const auth = new RestAuth("http://gw", { fetch: api.fetch, clock });
  await auth.login("dev", "pw");
  clock.advance(1_500);
  assert.equal((await auth.getToken()).token, "access-1", "not refreshed on every call");
  clock.advance(600);
  assert.equal((await auth.getToken()).token, "access-2");
});

Deno.test("RestAuth reports wrong credentials and an unreachable gateway as ApiError", async () => {
  const clock = new ManualClock();
  const auth = new RestAuth("http://gw", { fetch: fakeApi(clock).fetch, clock });
  await assert.rejects(
    auth.login("dev", "wrong"),
    (e: unknown) => e instanceof ApiError && e.status === 401 && /Invalid/.test(e.message),
  );
  await assert.rejects(auth.getToken(), (e: unknown) => e instanceof ApiError && e.status === 401);
  const down = new RestAuth("http://gw", {
    fetch: () => Promise.reject(new TypeError("connection refused")),
  });
  await assert.rejects(
    down.login("dev", "pw"),
    (e: unknown) => e instanceof ApiError && e.status === 0,
  );
});

Deno.test("RestAuth.request() sends the bearer token and returns the envelope's data", async () => {
  const clock = new ManualClock();
  const seen: Array<string | null> = [];
  const api = fakeApi(clock);
  const fetch = ((input: RequestInfo | URL, init?: RequestInit) => {
    seen.push(new Headers(init?.headers).get("authorization"));
    return api.fetch(input, init);
  }) as typeof globalThis.fetch;
  const auth = new RestAuth("http://gw", { fetch, clock });
  await auth.login("dev", "pw");
  assert.deepEqual(await auth.request("GET", "/api/v1/documents"), { path: "/api/v1/documents" });
  assert.equal(seen.at(-1), "Bearer access-1");
});
