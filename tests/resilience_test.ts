/**
 * Resilience under load, against real processes started like `deno task start`:
 * (a) statesync is SIGKILLed and restarted while writers send ops — nothing acknowledged is
 * lost or duplicated and every replica converges; (b) one abusive user floods the gateway,
 * paced at 40× its limit (the other users' p99 stays within 2× of unloaded) and at socket
 * speed (all their ops acknowledged, p99 within 5×), its admitted ops within its budget; (b2) a
 * subscriber that stops reading is closed as a slow consumer (4009) while the others receive
 * every event; (c) 5% loss on the gateway↔statesync Quantum link — runs only when the
 * stack supports gRPC over Quantum.
 * @module
 */
import assert from "node:assert/strict";
import { freePort, freeUdpPort, readLines, tempDir } from "../kernel/testing.ts";
import { DEV_USER, quantumAvailable, type StackOptions, startStack } from "../gateway/start.ts";
import { addUser } from "../gateway/user_add.ts";
import { LatencyHistogram, type LatencySummary } from "./load/latency.ts";
import { listenerPid } from "./load/runner.ts";
import { LoadWsClient, type ServerMessage, SocketClosedError } from "./load/ws_client.ts";
import type { FloodResult } from "./load/flood.ts";
import { OPEN_HTTP_LIMITS } from "./open_limits.ts";

/** How long the abusive client floods. */
const FLOOD_MS = 2_000;
/** Per-connection and per-user WebSocket message limit of the test (b) gateway. */
const WS_RATE = 25;
/** The abusive client's account, and the normal writers' (test (b)). */
const ABUSER = { username: "abuser", password: "abuser-password" };
const WRITERS = Array.from({ length: 8 }, (_, i) => ({
  username: `writer${i}`,
  password: `writer${i}-password`,
}));
/** Quiet/abused window pairs. */
const ROUNDS = 3;

function stackOptions(dataDir: string, extra: Partial<StackOptions> = {}): StackOptions {
  return {
    dataDir,
    gatewayPort: freePort(),
    sessionPort: freePort(),
    statesyncPort: freePort(),
    sessionQuantumPort: freeUdpPort(),
    statesyncQuantumPort: freeUdpPort(),
    transport: "tcp",
    logs: false,
    env: OPEN_HTTP_LIMITS, // the WebSocket limits (100 msg/s per connection, 1 MiB queue) stay
    ...extra,
  };
}

async function api(
  base: string,
  method: string,
  path: string,
  token?: string,
  body?: unknown,
): Promise<ServerMessage> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: token ? { authorization: `Bearer ${token}` } : {},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json.data;
}

async function loginAndCreate(
  base: string,
  docs: number,
  user: { username: string; password: string } = DEV_USER,
  editors: string[] = [],
) {
  const login = await api(base, "POST", "/api/v1/auth/login", undefined, {
    username: user.username,
    password: user.password,
  });
  const token = login.access_token as string;
  const ids: string[] = [];
  for (let i = 0; i < docs; i++) {
    const doc = await api(base, "POST", "/api/v1/documents", token, {
      name: `resilience-${i}`,
      type: "text",
      content: { text: "" },
      permissions: { editors, viewers: [] },
    });
    ids.push(doc.id);
  }
  return { token, ids };
}

/** Resolve when `predicate` holds, checked on every call of the returned `poke`. */
function until(label: string, predicate: () => boolean, timeoutMs = 20_000) {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const timer = setTimeout(() => reject(new Error(`Timed out waiting for ${label}`)), timeoutMs);
  const poke = () => {
    if (predicate()) {
      clearTimeout(timer);
      resolve();
    }
  };
  return { promise: promise.finally(() => clearTimeout(timer)), poke };
}

/** `promise`, or a rejection after `ms` (keeps a degraded run bounded). */
async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`No answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A writer: one subscribed socket, one op in flight, each op a unique token inserted at
 * offset 0 and resent with the same client_op_id until acknowledged; reconnects and
 * resumes from its last version when the socket closes. Keeps a replica from the events.
 */
class Writer {
  client: LoadWsClient | undefined;
  version = 0;
  text = "";
  /** Versions received as events, in order. */
  seen: number[] = [];
  acked = new Map<string, { version: number; duplicate: boolean }>();
  errors = new Map<string, number>();
  reconnects = 0;
  onProgress: () => void = () => {};
  #stop = false;
  #done: Promise<void> | undefined;

  constructor(
    readonly name: string,
    readonly wsUrl: string,
    readonly token: string,
    readonly documentId: string,
    readonly paceMs: number,
  ) {}

  async #connect(): Promise<LoadWsClient> {
    const c = await LoadWsClient.connect(this.wsUrl);
    c.onEvent = (m) => this.#onEvent(m);
    const auth = await c.request({ type: "auth", token: this.token });
    assert.equal(auth.type, "reply", JSON.stringify(auth));
    const first = this.client === undefined && this.seen.length === 0;
    const sub = await c.request({
      type: "subscribe",
      document_id: this.documentId,
      ...(first ? {} : { from_version: this.version }),
    });
    if (sub.type !== "reply") throw new Error(`subscribe: ${JSON.stringify(sub)}`);
    if (first) {
      this.version = sub.data.version;
      this.text = sub.data.document?.content?.text ?? "";
    }
    this.client = c;
    return c;
  }

  #onEvent(m: ServerMessage): void {
    if (m.event !== "operation_applied") return;
    this.seen.push(m.version);
    if (m.version <= this.version) return; // a duplicate: counted by the checks via `seen`
    this.version = m.version;
    for (const c of m.operation.components as ServerMessage[]) {
      if (c.type === "text_insert") {
        this.text = this.text.slice(0, c.offset) + c.text + this.text.slice(c.offset);
      }
    }
    this.onProgress();
  }

  start(): void {
    this.#done = this.#run();
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await this.#done;
  }

  async #run(): Promise<void> {
    let n = 0;
    while (!this.#stop) {
      const clientOpId = `${this.name}.${n++}`;
      // Resend until acknowledged (the same client_op_id is applied at most once).
      while (true) {
        let c: LoadWsClient;
        try {
          c = this.client?.open ? this.client : await this.#reconnect();
        } catch {
          await sleep(100);
          continue;
        }
        try {
          const reply = await c.request({
            type: "op",
            document_id: this.documentId,
            base_version: this.version,
            client_op_id: clientOpId,
            components: [{
              type: "text_insert",
              path: ["text"],
              offset: 0,
              text: `[${clientOpId}]`,
            }],
          });
          if (reply.type === "ack") {
            this.acked.set(clientOpId, { version: reply.version, duplicate: reply.duplicate });
            this.onProgress();
            break;
          }
          this.errors.set(reply.status, (this.errors.get(reply.status) ?? 0) + 1);
        } catch (error) {
          const key = error instanceof SocketClosedError ? `close ${error.code}` : "error";
          this.errors.set(key, (this.errors.get(key) ?? 0) + 1);
        }
        await sleep(50 + Math.random() * 50); // jittered retry backoff
      }
      await sleep(this.paceMs);
    }
  }

  async #reconnect(): Promise<LoadWsClient> {
    this.reconnects++;
    await this.client?.close().catch(() => {});
    return await this.#connect();
  }

  async open(): Promise<void> {
    await this.#connect();
  }

  async close(): Promise<void> {
    await this.client?.close();
  }
}

Deno.test("resilience: statesync SIGKILLed and restarted under load loses and duplicates no acknowledged op, replicas converge", async () => {
  await using dir = await tempDir("aetherflow-resilience-a-");
  const options = stackOptions(dir.path);
  await using stack = await startStack(options);
  const base = stack.gatewayUrl;
  const { token, ids } = await loginAndCreate(base, 1);
  const wsUrl = `${base.replace("http", "ws")}/ws`;
  const writers = Array.from(
    { length: 4 },
    (_, i) => new Writer(`w${i}`, wsUrl, token, ids[0]!, 40),
  );
  const totalAcks = () => writers.reduce((n, w) => n + w.acked.size, 0);
  let phase = until("40 acks before the kill", () => totalAcks() >= 40);
  for (const w of writers) {
    w.onProgress = () => phase.poke();
    await w.open();
  }
  for (const w of writers) w.start();
  await phase.promise;

  const pid = await listenerPid(options.statesyncPort);
  assert.ok(pid !== undefined && pid !== Deno.pid, "statesync pid not found");
  const acksAtKill = totalAcks();
  Deno.kill(pid, "SIGKILL");
  await stack.stop("statesync"); // reaps the killed child
  await stack.start("statesync");
  phase = until("40 more acks after the restart", () => totalAcks() >= acksAtKill + 40);
  phase.poke();
  await phase.promise;
  for (const w of writers) await w.stop();

  const server = await api(base, "GET", `/api/v1/documents/${ids[0]}`, token);
  const finalVersion = server.version as number;
  const finalText = server.content.text as string;
  phase = until(
    "every writer at the final version",
    () => writers.every((w) => w.version >= finalVersion),
  );
  phase.poke();
  await phase.promise;

  const outageErrors = writers.reduce(
    (n, w) => n + [...w.errors.values()].reduce((a, b) => a + b, 0),
    0,
  );
  const duplicates = writers.reduce(
    (n, w) => n + [...w.acked.values()].filter((a) => a.duplicate).length,
    0,
  );
  console.log(
    `acks ${totalAcks()} (${acksAtKill} before the kill), errors during the outage ${outageErrors}, ` +
      `resends acked as duplicate ${duplicates}, reconnects ${
        writers.reduce((n, w) => n + w.reconnects, 0)
      }, final v${finalVersion}`,
  );
  assert.ok(outageErrors > 0, "the kill was not noticed: the test did not exercise the outage");
  // Every acknowledged op is in the content exactly once; nothing else is.
  const tokens = finalText.match(/\[[^\]]+\]/g) ?? [];
  const counts = new Map<string, number>();
  for (const t of tokens) counts.set(t, (counts.get(t) ?? 0) + 1);
  const acked = writers.flatMap((w) => [...w.acked.keys()]);
  for (const id of acked) {
    assert.equal(counts.get(`[${id}]`), 1, `op ${id}: ${counts.get(`[${id}]`) ?? 0} copies`);
  }
  assert.equal(tokens.length, acked.length, "content holds ops that were never acknowledged");
  assert.equal(finalVersion, acked.length, "versions: one per applied op");
  // Non-duplicate acks name distinct versions.
  const versions = writers.flatMap((w) =>
    [...w.acked.values()].filter((a) => !a.duplicate).map((a) => a.version)
  );
  assert.equal(new Set(versions).size, versions.length);
  // Every replica saw every version once, in order, and equals the server's content.
  for (const w of writers) {
    const start = w.seen[0]!;
    assert.deepEqual(
      w.seen,
      Array.from({ length: w.seen.length }, (_, k) => start + k),
      `${w.name} event versions`,
    );
    assert.equal(w.seen.at(-1), finalVersion);
    assert.equal(w.text, finalText, `${w.name} replica`);
  }
  for (const w of writers) await w.close();
});

/**
 * Test (b): one abusive user floods its own document, at `floodRate` messages/s (0: as fast as
 * its socket takes them); the other users' ack p99 must stay within `maxRatio`× of unloaded.
 */
async function abusiveClient(floodRate: number, maxRatio: number) {
  await using dir = await tempDir("aetherflow-resilience-b-");
  // WebSocket limits of 25 msg/s per connection and per user (burst 50): the normal writers
  // (8 users, ~12 ops/s each) stay under them. The abuser is a user of its own flooding its
  // own document (at `floodRate`), reconnecting whenever it is closed: its admitted share
  // stays small next to its flood (reconnecting does not refill its user's budget), so the
  // test measures what the rejected flood costs everyone else.
  const usersFile = `${dir.path}/users.json`;
  await addUser(usersFile, ABUSER, { iterations: 1_000 });
  const writerIds: string[] = [];
  for (const writer of WRITERS) {
    writerIds.push(await addUser(usersFile, writer, { iterations: 1_000 }));
  }
  await using stack = await startStack(
    stackOptions(dir.path, {
      env: {
        ...OPEN_HTTP_LIMITS,
        AETHERFLOW_GATEWAY_WS__MESSAGES_PER_SECOND: String(WS_RATE),
        AETHERFLOW_GATEWAY_WS__USER_MESSAGES_PER_SECOND: String(WS_RATE),
      },
    }),
  );
  const base = stack.gatewayUrl;
  const { token, ids } = await loginAndCreate(base, 1, DEV_USER, writerIds);
  const abuser = await loginAndCreate(base, 1, ABUSER);
  const wsUrl = `${base.replace("http", "ws")}/ws`;
  const writers: Writer[] = [];
  for (const [i, writer] of WRITERS.entries()) {
    const login = await api(base, "POST", "/api/v1/auth/login", undefined, writer);
    writers.push(new Writer(`n${i}`, wsUrl, login.access_token as string, ids[0]!, 50));
  }
  for (const w of writers) await w.open();

  // Measure: ack latency of the normal writers' ops (send → ack) into `into`.
  const sample = async (ms: number, into: LatencyHistogram) => {
    const clients = writers.map((w) => w.client!);
    const started = performance.now();
    await Promise.all(clients.map(async (c, i) => {
      let n = 0;
      while (performance.now() - started < ms) {
        const t = performance.now();
        const reply = await withTimeout(
          c.request({
            type: "op",
            document_id: ids[0],
            base_version: writers[i]!.version,
            client_op_id: `p${Math.round(started)}-${i}-${n++}`,
            components: [{ type: "text_insert", path: ["text"], offset: 0, text: "n" }],
          }),
          15_000,
        );
        assert.equal(reply.type, "ack", JSON.stringify(reply));
        into.record(performance.now() - t);
        await sleep(80);
      }
    }));
  };

  // The abuser runs in its own process (a real attacker does not share our event loop):
  // it floods ops at `floodRate` and reconnects whenever closed.
  const flood = async (): Promise<FloodResult> => {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("./load/flood.ts", import.meta.url).pathname,
        "--url",
        wsUrl,
        "--token",
        abuser.token,
        "--document",
        abuser.ids[0]!,
        "--ms",
        String(FLOOD_MS),
        "--rate",
        String(floodRate),
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = readLines(child.stdout);
    const first = await lines.next();
    assert.equal(first.value, "flooding");
    const during = sample(FLOOD_MS - 200, loaded);
    let summary = "";
    for await (const line of lines) summary += line;
    await child.status;
    await during;
    return JSON.parse(summary) as FloodResult;
  };

  // Alternate quiet and abused windows so slow drifts of a shared machine hit both alike.
  // A second attempt is made only if the first misses the latency bound (a neighbour's
  // burst on a shared 2-core box); a systematic slowdown fails both.
  let loaded = new LatencyHistogram();
  await sample(500, new LatencyHistogram()); // warm-up
  const floods: FloodResult[] = [];
  const attempts: Array<{ quiet: LatencySummary; abused: LatencySummary; bound: number }> = [];
  for (let attempt = 0; attempt < 2; attempt++) {
    const unloaded = new LatencyHistogram();
    loaded = new LatencyHistogram();
    for (let round = 0; round < ROUNDS; round++) {
      await sample(FLOOD_MS - 200, unloaded);
      floods.push(await flood());
    }
    const quiet = unloaded.summary();
    // `maxRatio`× of the unloaded p99, with a 10 ms floor so a quiet moment's tiny baseline
    // does not make the check a coin toss.
    attempts.push({ quiet, abused: loaded.summary(), bound: maxRatio * Math.max(quiet.p99, 10) });
    if (attempts.at(-1)!.abused.p99 <= attempts.at(-1)!.bound) break;
  }
  const abuse = floods.reduce((sum, f) => ({
    sent: sum.sent + f.sent,
    rateLimited: sum.rateLimited + f.rateLimited,
    acks: sum.acks + f.acks,
    connections: sum.connections + f.connections,
    closes: Object.fromEntries(
      [...new Set([...Object.keys(sum.closes), ...Object.keys(f.closes)])]
        .map((k) => [k, (sum.closes[k] ?? 0) + (f.closes[k] ?? 0)]),
    ),
  }));
  const stats = await api(base, "GET", "/ws/stats", token);
  for (const { quiet, abused } of attempts) {
    console.log(
      `unloaded ack p50 ${quiet.p50.toFixed(1)} p99 ${
        quiet.p99.toFixed(1)
      } ms (n=${quiet.count}); ` +
        `under abuse p50 ${abused.p50.toFixed(1)} p99 ${
          abused.p99.toFixed(1)
        } ms (n=${abused.count})`,
    );
  }
  console.log(`abuser: ${JSON.stringify(abuse)}; gateway rateLimited ${stats.rateLimited}`);
  assert.ok(abuse.rateLimited >= 1, "the abuser never got RESOURCE_EXHAUSTED");
  assert.ok(stats.rateLimited >= abuse.rateLimited);
  // The ops applied to the abuser's document stay within its user's bucket however often it
  // reconnected: per flood at most the burst (2×) plus the rate per second.
  const abused = await api(base, "GET", `/api/v1/documents/${abuser.ids[0]}`, abuser.token);
  const bound = floods.length * (2 * WS_RATE + WS_RATE * (FLOOD_MS / 1000));
  console.log(`abuser's ops applied: ${abused.version} (bound ${bound})`);
  assert.ok(abused.version <= bound, `${abused.version} ops admitted > ${bound}`);
  const last = attempts.at(-1)!;
  assert.ok(
    last.abused.p99 <= last.bound,
    `p99 under abuse ${last.abused.p99.toFixed(1)} ms > ${last.bound.toFixed(1)} ms`,
  );
  for (const w of writers) await w.close();
}

Deno.test("resilience: an abusive client flooding at 40× its rate trips its rate limit while the other clients' p99 stays within 2× of unloaded", async () => {
  await abusiveClient(40 * WS_RATE, 2);
});

// A flood at socket speed, reconnecting on every close, costs the gateway a handshake and an
// auth per connection and a look at every message: the others' p99 measured 1.4-1.9× of
// unloaded on a quiet host and up to 4.4× on a busy one (5× asserted). Before per-user
// budgets and maxOpsBehind, such a flood took the service down (no answer within 15 s).
Deno.test("resilience: an abusive client flooding at socket speed is contained: the others' ops are all acknowledged, p99 within 5× of unloaded", async () => {
  await abusiveClient(0, 5);
});

/** A WebSocket text frame as a client sends it (masked). */
function clientFrame(text: string): Uint8Array {
  const payload = new TextEncoder().encode(text);
  const n = payload.length;
  const header = n < 126 ? [0x81, 0x80 | n] : [0x81, 0x80 | 126, n >> 8, n & 255];
  const mask = crypto.getRandomValues(new Uint8Array(4));
  const frame = new Uint8Array(header.length + 4 + n);
  frame.set(header, 0);
  frame.set(mask, header.length);
  for (let i = 0; i < n; i++) frame[header.length + 4 + i] = payload[i]! ^ mask[i % 4]!;
  return frame;
}

Deno.test("resilience: a subscriber that stops reading is closed as a slow consumer while the others keep receiving everything", async () => {
  await using dir = await tempDir("aetherflow-resilience-b2-");
  await using stack = await startStack(stackOptions(dir.path));
  const base = stack.gatewayUrl;
  const { token, ids } = await loginAndCreate(base, 4);
  const wsUrl = `${base.replace("http", "ws")}/ws`;
  // The stalled client: a raw TCP WebSocket that authenticates, subscribes to all four
  // documents and then never reads again.
  const port = Number(new URL(base).port);
  const stalled = await Deno.connect({ hostname: "127.0.0.1", port });
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  await stalled.write(new TextEncoder().encode(
    `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  ));
  const head = new Uint8Array(1024);
  const got = await stalled.read(head);
  assert.match(new TextDecoder().decode(head.subarray(0, got ?? 0)), /^HTTP\/1.1 101/);
  await stalled.write(clientFrame(JSON.stringify({ type: "auth", id: 1, token })));
  for (const [i, id] of ids.entries()) {
    await stalled.write(
      clientFrame(JSON.stringify({ type: "subscribe", id: 2 + i, document_id: id })),
    );
  }
  // One healthy writer per document sends 30 KB inserts, each followed by its delete (the
  // documents stay small; every insert event is ~30 KB for each subscriber).
  const writers = await Promise.all(ids.map(async (id) => {
    const c = await LoadWsClient.connect(wsUrl);
    await c.request({ type: "auth", token });
    const sub = await c.request({ type: "subscribe", document_id: id });
    const state = { c, id, version: sub.data.version as number, received: 0, acked: 0 };
    c.onEvent = (m) => {
      if (m.event === "operation_applied") state.received++;
    };
    return state;
  }));
  const statsNow = async () => (await api(base, "GET", "/ws/stats", token)) as ServerMessage;
  const big = "x".repeat(30_000);
  const deadline = performance.now() + 30_000;
  let closed = false;
  while (!closed && performance.now() < deadline) {
    await Promise.all(writers.map(async (w) => {
      for (
        const components of [
          [{ type: "text_insert", path: ["text"], offset: 0, text: big }],
          [{ type: "text_delete", path: ["text"], offset: 0, length: big.length }],
        ]
      ) {
        const ack = await w.c.request({
          type: "op",
          document_id: w.id,
          base_version: w.version,
          components,
        });
        assert.equal(ack.type, "ack", JSON.stringify(ack).slice(0, 200));
        w.version = ack.version;
        w.acked++;
      }
    }));
    closed = (await statsNow()).slowConsumersClosed >= 1;
  }
  const stats = await statsNow();
  const acked = writers.reduce((n, w) => n + w.acked, 0);
  console.log(
    `slow consumer closed after ${acked} ops (~${Math.round((acked / 2) * 30 / 1024)} MiB of ` +
      `insert events queued to it); connections now ${stats.connections}`,
  );
  assert.equal(stats.slowConsumersClosed, 1, "the stalled subscriber was not closed");
  assert.equal(stats.connections, writers.length, "only the stalled socket was closed");
  // The healthy writers got every event of their document (their own ops, echoed).
  const done = until(
    "writers received all their events",
    () => writers.every((w) => w.received >= w.acked),
  );
  for (const w of writers) {
    w.c.onEvent = (m) => {
      if (m.event === "operation_applied") w.received++;
      done.poke();
    };
  }
  done.poke();
  await done.promise;
  stalled.close();
  for (const w of writers) await w.c.close();
});

const quantumReady = await quantumAvailable();
const relayModule = await import("../quantum/mod.ts") as Record<string, unknown>;
const relayReady = typeof relayModule.startRelay === "function";

Deno.test({
  name:
    "resilience: 5% loss on the gateway↔statesync Quantum link, ops keep flowing with no errors" +
    (quantumReady && relayReady
      ? ""
      : ` [NOT RUN: quantum/mod.ts does not export ${
        [quantumReady ? "" : "connectGrpcOverQuantum", relayReady ? "" : "startRelay"].filter(
          Boolean,
        )
          .join(" and ")
      } yet]`),
  ignore: !(quantumReady && relayReady),
  async fn() {
    type RelayFactory = (o: {
      target: { hostname: string; port: number };
      impairments: { loss: number };
    }) => {
      addr: Deno.NetAddr;
      close(): Promise<void>;
      stats(): Record<"upstream" | "downstream", { offered: number; lost: number }>;
    };
    const startRelay = relayModule.startRelay as RelayFactory;
    await using dir = await tempDir("aetherflow-resilience-c-");
    const statesyncQuantumPort = freeUdpPort();
    const relay = startRelay({
      target: { hostname: "127.0.0.1", port: statesyncQuantumPort },
      impairments: { loss: 0.05 },
    });
    try {
      await using stack = await startStack(stackOptions(dir.path, {
        transport: "quantum",
        statesyncQuantumPort,
        dialStatesync: `127.0.0.1:${relay.addr.port}`,
      }));
      const base = stack.gatewayUrl;
      const { token, ids } = await loginAndCreate(base, 1);
      const wsUrl = `${base.replace("http", "ws")}/ws`;
      const writers = Array.from(
        { length: 3 },
        (_, i) => new Writer(`q${i}`, wsUrl, token, ids[0]!, 30),
      );
      const total = () => writers.reduce((n, w) => n + w.acked.size, 0);
      const phase = until("90 acks over the lossy link", () => total() >= 90, 30_000);
      for (const w of writers) {
        w.onProgress = () => phase.poke();
        await w.open();
      }
      for (const w of writers) w.start();
      await phase.promise;
      for (const w of writers) await w.stop();
      const server = await api(base, "GET", `/api/v1/documents/${ids[0]}`, token);
      const done = until(
        "replicas at the final version",
        () => writers.every((w) => w.version >= server.version),
      );
      for (const w of writers) w.onProgress = () => done.poke();
      done.poke();
      await done.promise;
      const { upstream, downstream } = relay.stats();
      console.log(
        `acks ${total()}; relay lost ${upstream.lost}/${upstream.offered} upstream, ` +
          `${downstream.lost}/${downstream.offered} downstream datagrams`,
      );
      // The loss really happened on the link the ops used.
      assert.ok(upstream.lost > 0 && downstream.lost > 0, "the relay dropped nothing");
      for (const w of writers) {
        assert.equal(w.errors.size, 0, `${w.name} errors ${[...w.errors]}`);
        assert.equal(w.text, server.content.text);
      }
      for (const w of writers) await w.close();
    } finally {
      await relay.close();
    }
  },
});
