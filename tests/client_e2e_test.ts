/**
 * The browser client library (gateway/client) in Deno against the real stack: session,
 * statesync and gateway as child processes started like `deno task start` (free ports,
 * temp data dir), with 6-second access tokens so refresh on the open socket is exercised
 * all the time. Also prints the keystroke latencies the client sees (submit → ack, submit →
 * applied at the other client).
 */
import assert from "node:assert/strict";
import { freePort, tempDir } from "../kernel/testing.ts";
import { DEV_USER, startStack } from "../gateway/start.ts";
import { AetherFlowClient, type DocHandle, type Op, RestAuth } from "../gateway/client/mod.ts";

const WAIT_MS = 30_000;
const ins = (offset: number, text: string): Op => [
  { path: ["text"], action: { type: "text_insert", offset, text } },
];
const textOf = (doc: DocHandle) => (doc.content as { text: string }).text;

/** Resolve once `check()` holds, re-checking on the documents' events; reject after WAIT_MS. */
function until(docs: DocHandle[], check: () => boolean, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const offs: Array<() => void> = [];
    const timer = setTimeout(() => {
      done();
      reject(new Error(`Timed out waiting for ${what}`));
    }, WAIT_MS);
    const done = () => {
      clearTimeout(timer);
      for (const off of offs) off();
    };
    const test = () => {
      if (!check()) return;
      done();
      resolve();
    };
    for (const doc of docs) {
      for (const type of ["change", "ack", "synced"] as const) offs.push(doc.events.on(type, test));
    }
    test();
  });
}

function converged(docs: DocHandle[]): () => boolean {
  return () =>
    docs.every((d) =>
      d.live && d.queued === 0 && d.version === docs[0]!.version && textOf(d) === textOf(docs[0]!)
    );
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

Deno.test({
  name: "client library against the real gateway: convergence, token refresh on the socket, " +
    "dropped connection, gateway restart",
  sanitizeResources: false, // fetch keep-alive connections are pooled by the runtime
  sanitizeOps: false,
  async fn(t) {
    await using dir = await tempDir("aetherflow-client-e2e-");
    const stack = await startStack({
      dataDir: dir.path,
      gatewayPort: freePort(),
      sessionPort: freePort(),
      statesyncPort: freePort(),
      transport: "tcp",
      logs: Deno.env.get("E2E_LOGS") === "1",
      env: { AETHERFLOW_GATEWAY_AUTH__ACCESS_TTL_SECONDS: "6" },
    });
    const clients: AetherFlowClient[] = [];
    try {
      const wsUrl = `${stack.gatewayUrl.replace("http", "ws")}/ws`;
      const sign = async () => {
        const auth = new RestAuth(stack.gatewayUrl);
        await auth.login(DEV_USER.username, DEV_USER.password);
        const client = new AetherFlowClient({ url: wsUrl, auth });
        clients.push(client);
        client.connect();
        return { auth, client };
      };
      const alice = await sign();
      const bob = await sign();
      const created = await alice.auth.request<{ id: string }>("POST", "/api/v1/documents", {
        name: "client-e2e",
        type: "text",
        content: { text: "" },
      });
      const a = await alice.client.open(created.id);
      const b = await bob.client.open(created.id);
      const docs = [a, b];
      const serverText = async () =>
        (await alice.auth.request<{ content: { text: string } }>(
          "GET",
          `/api/v1/documents/${created.id}`,
        )).content.text;

      await t.step("concurrent edits from two clients converge", async () => {
        for (let i = 0; i < 150; i++) {
          // alice types at the front, bob appends; neither waits for the other.
          a.submit(ins(0, "a"));
          b.submit(ins(textOf(b).length, "b"));
          if (i % 10 === 0) await new Promise<void>((r) => setTimeout(r, 0)); // let I/O run
        }
        await until(docs, converged(docs), "convergence");
        assert.equal(textOf(a).length, 300);
        assert.equal(textOf(a).replaceAll("b", ""), "a".repeat(150));
        assert.equal(textOf(a).replaceAll("a", ""), "b".repeat(150));
        assert.equal(await serverText(), textOf(a));
      });

      await t.step(
        "latency: one keystroke at a time, submit → ack and → visible to the other",
        async () => {
          const acks: number[] = [];
          const seen: number[] = [];
          for (let i = 0; i < 100; i++) {
            const ack = a.events.next("ack");
            const remote = b.events.next("change", (c) => c.source === "remote");
            const started = performance.now();
            a.submit(ins(0, "k"));
            await Promise.all([
              ack.then(() => acks.push(performance.now() - started)),
              remote.then(() => seen.push(performance.now() - started)),
            ]);
          }
          acks.sort((x, y) => x - y);
          seen.sort((x, y) => x - y);
          const row = (name: string, xs: number[]) =>
            `| ${name} | ${quantile(xs, 0.5).toFixed(2)} | ${quantile(xs, 0.9).toFixed(2)} | ${
              quantile(xs, 0.99).toFixed(2)
            } |`;
          console.log(
            [
              "| 100 sequential keystrokes (ms) | p50 | p90 | p99 |",
              "|---|---|---|---|",
              row("submit → ack (author)", acks),
              row("submit → applied at the other client", seen),
            ].join("\n"),
          );
          assert.equal(acks.length, 100);
          await until(docs, converged(docs), "convergence after the keystrokes");
        },
      );

      await t.step(
        "the access token is refreshed on the open socket, without a reconnect",
        async () => {
          let refreshed = 0;
          let disconnected = 0;
          const offs = [
            alice.client.events.on("authenticated", () => refreshed++),
            alice.client.events.on("disconnected", () => disconnected++),
          ];
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error("no refresh")), WAIT_MS);
            const off = alice.client.events.on("authenticated", () => {
              if (refreshed < 2) return;
              clearTimeout(timer);
              off();
              resolve();
            });
          });
          for (const off of offs) off();
          assert.equal(disconnected, 0, "tokens (6 s) were refreshed before they expired");
          a.submit(ins(0, "<"));
          await until(docs, converged(docs), "convergence after refresh");
        },
      );

      await t.step(
        "a dropped connection with ops in flight resumes and resends them once",
        async () => {
          const before = textOf(a);
          a.submit(ins(before.length, "!"));
          alice.client.dropConnection(); // the op is in flight
          a.submit(ins(0, "?")); // and one is queued while reconnecting
          b.submit(ins(0, "#"));
          await until(docs, converged(docs), "convergence after a drop");
          // "?" and "#" are concurrent inserts at 0: the server's order decides which is first.
          assert.ok([`?#${before}!`, `#?${before}!`].includes(textOf(a)), textOf(a));
          assert.equal(await serverText(), textOf(a));
        },
      );

      await t.step(
        "a gateway restart: both clients reconnect by themselves and converge",
        async () => {
          await stack.stop("gateway");
          a.submit(ins(0, "1"));
          b.submit(ins(textOf(b).length, "2"));
          assert.ok(a.queued > 0 && b.queued > 0);
          await stack.start("gateway");
          await until(docs, converged(docs), "convergence after the restart");
          assert.ok(textOf(a).startsWith("1") && textOf(a).endsWith("2"));
          assert.equal(await serverText(), textOf(a));
          assert.equal(alice.client.status, "online");
          assert.equal(bob.client.status, "online");
        },
      );
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await stack.shutdown();
    }
  },
});
