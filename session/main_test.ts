import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { freePort, spawnDeno, tempDir } from "../kernel/testing.ts";
import { SessionState } from "../proto/gen/session.ts";
import { SessionClient } from "./client.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** A `session/main.ts` child process, ready once it logged that it listens. */
async function spawnService(env: Record<string, string>) {
  const main = spawnDeno(MAIN, { env });
  const line = await main.log.wait("Session service listening");
  if (line === "") {
    await main.stop();
    throw new Error(`session/main.ts exited early:\n${main.log.lines.join("\n")}`);
  }
  return {
    listening: JSON.parse(line) as Record<string, unknown>,
    lines: main.log.lines,
    stop: main.stop,
  };
}

Deno.test("main.ts keeps sessions across a restart on the same data dir and still expires them", async () => {
  await using dir = await tempDir("aetherflow-session-");
  const port = freePort();
  const env = {
    AETHERFLOW_SESSION_PORT: String(port),
    AETHERFLOW_SESSION_DATA_DIR: dir.path,
    AETHERFLOW_SESSION_SWEEP_INTERVAL_MS: "50",
    AETHERFLOW_SESSION_LOG_LEVEL: "info",
  };
  const first = await spawnService(env);
  assert.equal(first.listening.address, `127.0.0.1:${port}`);
  let keep, short;
  {
    using client = new SessionClient(`127.0.0.1:${port}`);
    keep = await client.createSession({ userId: "alice", ttlSeconds: 3600, metadata: { a: "1" } });
    short = await client.createSession({ userId: "bob", ttlSeconds: 1 });
    await client.updateSession({
      sessionId: keep.session!.id,
      updateMask: ["state"],
      state: SessionState.SESSION_STATE_IDLE,
    });
  }
  const exit = await first.stop("SIGTERM");
  assert.equal(exit.code, 0, first.lines.join("\n"));
  assert.ok(first.lines.some((line) => line.includes("Session service stopped")));

  const second = await spawnService(env);
  try {
    using client = new SessionClient(`127.0.0.1:${port}`);
    const again = await client.getSession({
      selector: { $case: "token", value: keep.token },
    });
    assert.equal(again.id, keep.session!.id);
    assert.equal(again.state, SessionState.SESSION_STATE_IDLE);
    assert.deepEqual(again.metadata, { a: "1" });
    assert.equal(again.expiresAt, keep.session!.expiresAt);
    // Expiry still applies after the restart: wait until the short session's stored expiry
    // has passed on the wall clock (the thing under test), then it must be gone.
    const remaining = short.session!.expiresAt - Date.now();
    if (remaining > 0) await new Promise((resolve) => setTimeout(resolve, remaining + 1));
    await assert.rejects(
      client.getSession({ selector: { $case: "sessionId", value: short.session!.id } }),
      (error: { code: number }) => error.code === status.NOT_FOUND,
    );
    await assert.rejects(
      client.heartbeat({ sessionId: short.session!.id }),
      (error: { code: number }) => error.code === status.NOT_FOUND,
    );
    assert.deepEqual((await client.listSessions({})).sessions.map((s) => s.id), [
      keep.session!.id,
    ]);
  } finally {
    const exit2 = await second.stop("SIGINT");
    assert.equal(exit2.code, 0, second.lines.join("\n"));
  }
});

Deno.test("stopping main.ts after hundreds of calls does not crash its clients (no GOAWAY)", async () => {
  // Deno 2.9.6 aborts a process that receives an HTTP/2 GOAWAY on a connection that carried a
  // few hundred streams (denoland/deno#36788). If the service's shutdown sent one, this test
  // process (the client) would die here.
  await using dir = await tempDir("aetherflow-session-");
  const port = freePort();
  const service = await spawnService({
    AETHERFLOW_SESSION_PORT: String(port),
    AETHERFLOW_SESSION_DATA_DIR: dir.path,
    AETHERFLOW_SESSION_STORAGE: "memory",
  });
  const client = new SessionClient(`127.0.0.1:${port}`);
  const { session } = await client.createSession({ userId: "u" });
  for (let i = 0; i < 400; i++) {
    await client.getSession({ selector: { $case: "sessionId", value: session!.id } });
  }
  const exit = await service.stop("SIGTERM");
  assert.equal(exit.code, 0, service.lines.join("\n"));
  // The call fails fast. Usually UNAVAILABLE; Deno's http2 client sometimes reports the closed
  // socket as INTERNAL "Received RST_STREAM with code 2 ... ended by the other party".
  await assert.rejects(
    client.getSession({ selector: { $case: "sessionId", value: session!.id } }),
    (error: { code: number }) =>
      error.code === status.UNAVAILABLE || error.code === status.INTERNAL,
  );
  // The server is gone, so closing the channel cannot crash it either.
  client.close();
});

Deno.test("a client closing its channel after hundreds of calls does not crash main.ts", async () => {
  // The other direction of denoland/deno#36788: closing a grpc-js channel sends a GOAWAY,
  // which would abort the server process; the service's listener drops client GOAWAYs.
  const port = freePort();
  const service = await spawnService({
    AETHERFLOW_SESSION_PORT: String(port),
    AETHERFLOW_SESSION_STORAGE: "memory",
  });
  try {
    const first = new SessionClient(`127.0.0.1:${port}`);
    const { session } = await first.createSession({ userId: "u" });
    for (let i = 0; i < 400; i++) {
      await first.getSession({ selector: { $case: "sessionId", value: session!.id } });
    }
    first.close(); // sends GOAWAY
    using second = new SessionClient(`127.0.0.1:${port}`);
    // Keep the server busy across the moment the GOAWAY would be processed.
    for (let i = 0; i < 20; i++) {
      const found = await second.getSession({
        selector: { $case: "sessionId", value: session!.id },
      });
      assert.equal(found.id, session!.id);
    }
  } finally {
    const exit = await service.stop("SIGTERM");
    assert.equal(exit.code, 0, service.lines.join("\n"));
  }
});
