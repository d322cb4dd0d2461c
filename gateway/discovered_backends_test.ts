import assert from "node:assert/strict";
import { connectEtcd } from "../kernel/etcd.ts";
import { ETCD_BINARY, freePort, needs, readLines, startEtcd } from "../kernel/testing.ts";
import { CreateSessionRequest, ListSessionsRequest } from "../proto/gen/session.ts";
import { createDiscoveredBackends } from "./discovered_backends.ts";
import { registerService } from "../kernel/discovery.ts";

const tools = needs(ETCD_BINARY);
const SESSION_MAIN = new URL("../session/main.ts", import.meta.url).pathname;

/** A `session/main.ts` process on memory storage, ready once it logged that it listens. */
async function sessionProcess() {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SESSION_MAIN],
    env: {
      AETHERFLOW_SESSION_PORT: String(port),
      AETHERFLOW_SESSION_STORAGE: "memory",
    },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // Read with next() (a for-await `break` would cancel the pipe under the running child).
  const lines = readLines(child.stderr);
  for (;;) {
    const { value, done } = await lines.next();
    if (done) throw new Error("session/main.ts exited before listening");
    if (value.includes("Session service listening")) break;
  }
  const drain = (async () => {
    while (!(await lines.next()).done) { /* discard */ }
  })();
  return {
    address: `127.0.0.1:${port}`,
    async kill() {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await child.status;
      await drain;
    },
  };
}

Deno.test({
  name: "createDiscoveredBackends() spreads calls over registered instances and fails over " +
    "idempotent calls when one is killed" + tools.note,
  ignore: tools.ignore,
  async fn() {
    await using server = await startEtcd();
    const etcd = await connectEtcd({ endpoints: [server.endpoint], prefix: "/cluster" });
    const a = await sessionProcess();
    const b = await sessionProcess();
    const registrations = [];
    for (const instance of [a, b]) {
      registrations.push(
        await registerService(etcd, {
          service: "session",
          address: { tcp: instance.address, quantum: "" },
        }),
      );
    }
    const backends = await createDiscoveredBackends({ etcd, defaultTimeoutMs: 3000 });
    try {
      const created = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          backends.session.createSession(
            CreateSessionRequest.fromPartial({ userId: `user-${i}` }),
          )),
      );
      assert.equal(created.length, 20);
      // Each instance has its own memory store: both got some of the sessions.
      const list = () =>
        backends.session.listSessions(ListSessionsRequest.fromPartial({ pageSize: 100 }));
      // Concurrent calls: in-flight calls raise a node's load, so both get picked.
      const views = new Map<string, number>();
      for (const { sessions } of await Promise.all(Array.from({ length: 40 }, () => list()))) {
        views.set(sessions.map((s) => s.id).sort().join(), sessions.length);
      }
      assert.equal(views.size, 2);
      assert.equal([...views.values()].reduce((x, y) => x + y, 0), 20);
      assert.ok(![...views.values()].includes(0));
      assert.equal((await backends.health(1000)).session?.status, "SERVING");

      // A dies (kill -9) while still registered: idempotent calls routed to it fail over.
      await a.kill();
      const lists = await Promise.all(Array.from({ length: 10 }, () => list()));
      const survivors = new Set(lists.map((l) => l.sessions.map((s) => s.id).sort().join()));
      assert.equal(survivors.size, 1);
      assert.match((await backends.health(1000)).session?.error ?? "", /1 of 2 instances/);
    } finally {
      await backends.close();
      for (const registration of registrations) await registration.close();
      await a.kill();
      await b.kill();
      etcd.close();
    }
  },
});
