/**
 * Session service benchmark (`deno task bench:session`).
 *
 * 1. CreateSession / GetSession / Heartbeat, sequential and with 32 in flight, through
 *    gRPC over TCP against the Deno KV store, and through the in-process manager alone (KV,
 *    with and without group commits) so the gRPC overhead is visible.
 * 2. Sustained open-loop load: requests leave on a fixed schedule without waiting for answers,
 *    at 250, 500, 1000, ... req/s until the achieved rate falls behind; reports the highest rate
 *    within the p99 target and the highest rate sustained. First against a trivial grpc-js echo
 *    server (no KV, no validation, no metrics: the platform floor), then GetSession and
 *    CreateSession against the real service, so the two can be read side by side.
 *
 * The gRPC server is `session/main.ts` in its own process (as deployed). The closed-loop load
 * comes from this process; each open-loop ramp runs in a fresh generator process (this script
 * with `--generate`), so neither the server nor the generator shares an event loop or a heap
 * with other work. The gRPC/Quantum rows reach the same server through a loopback TCP tunnel
 * into Quantum (`startQuantumTunnel`; the gateway skips that loopback hop with
 * `connectGrpcOverQuantum`).
 *
 * Options: `--quick` runs smaller counts and 1 s steps (for a smoke run); `--open-loop-only`
 * skips the closed-loop rows; `--in-process-only` runs only the in-process manager rows (no
 * gRPC service, no open loop), for iterating on the store.
 * @module
 */
import {
  Client,
  credentials,
  type sendUnaryData,
  Server,
  type ServerUnaryCall,
} from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { listenGuarded } from "../../kernel/mod.ts";
import { SessionClient } from "../../session/client.ts";
import { KvSessionStore } from "../../session/kv_store.ts";
import { SessionManager } from "../../session/manager.ts";
import { freePort, freeUdpPort } from "../../kernel/testing.ts";
import { startQuantumTunnel } from "../../quantum/mod.ts";

/** Wait until the child answers (it logs at warn level, so readiness is probed). */
async function waitReady(client: SessionClient): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    try {
      await client.listSessions({ pageSize: 1 }, { timeoutMs: 1000 });
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error("session service did not start");
}

const QUICK = Deno.args.includes("--quick");
const N_SEQ = QUICK ? 200 : 1000;
const N_PAR = QUICK ? 640 : 4000;
const IN_FLIGHT = 32;
const OPEN_LOOP_ONLY = Deno.args.includes("--open-loop-only");
const IN_PROCESS_ONLY = Deno.args.includes("--in-process-only");
const STEP_SECONDS = QUICK ? 1 : 2;
const RATES = [250, 500, 1000, 1500, 2000, 3000];
/** The echo floor's request and reply size: about a GetSession request. */
const ECHO_BYTES = 48;
const identity = (bytes: Buffer) => bytes;
const ECHO_METHOD = {
  path: "/bench.Echo/Echo",
  requestStream: false,
  responseStream: false,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
} as const;

interface Result {
  label: string;
  ops: number;
  seconds: number;
  latencies: number[];
  /** CPU time (user + system, all threads) the serving process spent, ms. */
  cpuMs: number;
}

/** The process doing the work being measured: this one, or the gRPC server child. */
let servingPid: number | "self" = "self";

/** User + system CPU time of a process in ms, from /proc (Linux; NaN elsewhere). */
function cpuTimeMs(pid: number | "self"): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 of stat(5) (utime, stime) are at 11 and 12 after "pid (comm) ".
    return (Number(fields[11]) + Number(fields[12])) * 10; // USER_HZ = 100
  } catch {
    return NaN;
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function run(
  label: string,
  count: number,
  concurrency: number,
  op: (i: number) => Promise<unknown>,
): Promise<Result> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  const cpuBefore = cpuTimeMs(servingPid);
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      const i = next++;
      const t = performance.now();
      await op(i);
      latencies.push(performance.now() - t);
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  return { label, ops: count, seconds, latencies, cpuMs: cpuTimeMs(servingPid) - cpuBefore };
}

function row(result: Result): string {
  const sorted = [...result.latencies].sort((a, b) => a - b);
  return `| ${result.label} | ${result.ops} | ${(result.ops / result.seconds).toFixed(0)} | ${
    percentile(sorted, 0.5).toFixed(2)
  } | ${percentile(sorted, 0.99).toFixed(2)} | ${(result.cpuMs / result.ops).toFixed(3)} |`;
}

/** One open-loop step, as the generator process reports it. */
interface Step {
  call: string;
  rate: number;
  achieved: number;
  errors: number;
  /** Latency from each request's intended send time (includes the generator's lag), ms. */
  intended: { p50: number; p99: number };
  /** Latency from each request's actual send, ms. */
  sent: { p50: number; p99: number };
  /** How late requests left against their schedule (timer granularity, stalls), ms. */
  lag: { p50: number; p99: number };
  /** CPU the serving process spent per request, ms. */
  cpuMsPerOp: number;
}

/**
 * Open loop at `rate` req/s for `seconds`: every request has its own due time and goes out
 * then, whether or not earlier ones were answered. The generator sleeps until the next due
 * time; Deno's timers fire a millisecond or more late, so requests that fell due meanwhile
 * leave together, each timed from its own due time and from its actual send.
 */
async function openLoop(
  call: string,
  rate: number,
  seconds: number,
  op: (i: number) => Promise<unknown>,
  servingPid: number,
): Promise<Step> {
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const fromIntended: number[] = [];
  const fromSend: number[] = [];
  const lag: number[] = [];
  const pending: Promise<void>[] = [];
  let errors = 0;
  const cpuBefore = cpuTimeMs(servingPid);
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const sentAt = performance.now();
    lag.push(sentAt - due);
    pending.push(
      op(i).then(
        () => {
          const now = performance.now();
          fromIntended.push(now - due);
          fromSend.push(now - sentAt);
        },
        () => void errors++,
      ),
    );
  }
  await Promise.all(pending);
  const elapsed = (performance.now() - start) / 1000;
  const cpuMs = cpuTimeMs(servingPid) - cpuBefore;
  const quantiles = (values: number[]) => {
    const sorted = values.sort((a, b) => a - b);
    return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99) };
  };
  return {
    call,
    rate,
    achieved: fromSend.length / elapsed,
    errors,
    intended: quantiles(fromIntended),
    sent: quantiles(fromSend),
    lag: quantiles(lag),
    cpuMsPerOp: cpuMs / total,
  };
}

/** In-process manager over KV, with and without group commits. */
async function managerRows(dir: string): Promise<string[]> {
  const rows: string[] = [];
  for (const groupCommit of [true, false]) {
    const path = `${dir}/manager-${groupCommit}.kv`;
    await using store = await KvSessionStore.open(path, { groupCommit });
    const manager = new SessionManager(store, { maxSessionsPerUser: 1000 });
    const tag = `manager+KV${groupCommit ? "" : " (no group commit)"}`;
    const ids: string[] = [];
    let u = 0;
    const create = async () => {
      const { session } = await manager.create({ userId: `m-${groupCommit}-${u++}` });
      ids.push(session.id);
    };
    if (groupCommit) rows.push(row(await run(`${tag} Create, sequential`, N_SEQ, 1, create)));
    rows.push(row(await run(`${tag} Create, ${IN_FLIGHT} in flight`, N_PAR, IN_FLIGHT, create)));
    if (!groupCommit) continue;
    const pick = (i: number) => ids[(i * 7919) % ids.length]!;
    const get = (i: number) => manager.get(pick(i));
    const beat = (i: number) => manager.heartbeat(pick(i));
    rows.push(row(await run(`${tag} Get, sequential`, N_SEQ, 1, get)));
    rows.push(row(await run(`${tag} Get, ${IN_FLIGHT} in flight`, N_PAR, IN_FLIGHT, get)));
    rows.push(row(await run(`${tag} Heartbeat, sequential`, N_SEQ, 1, beat)));
    rows.push(row(await run(`${tag} Heartbeat, ${IN_FLIGHT} in flight`, N_PAR, IN_FLIGHT, beat)));
  }
  return rows;
}

/** The real service (`session/main.ts`, KV store) in its own process, as deployed. */
async function startService(dir: string, client: SessionClient, port: number, quantumPort: number) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../../session/main.ts", import.meta.url).pathname],
    env: {
      AETHERFLOW_SESSION_PORT: String(port),
      AETHERFLOW_SESSION_QUANTUM_PORT: String(quantumPort),
      AETHERFLOW_SESSION_DATA_DIR: `${dir}/grpc`,
      AETHERFLOW_SESSION_MAX_SESSIONS_PER_USER: "1000",
      AETHERFLOW_SESSION_LOG_LEVEL: "warn",
    },
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  await waitReady(client);
  return {
    pid: child.pid,
    async [Symbol.asyncDispose]() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

/** gRPC over TCP and over Quantum (loopback TCP tunnel -> Quantum (UDP) -> server). */
async function grpcRows(client: SessionClient, quantumPort: number): Promise<string[]> {
  const rows: string[] = [];
  const ids: string[] = [];
  let u = 0;
  const create = async () => {
    const { session } = await client.createSession({ userId: `g-${u++}` });
    ids.push(session!.id);
  };
  await run("warm-up", 200, 8, create);
  const pick = (i: number) => ids[(i * 7919) % ids.length]!;
  const get = (i: number) =>
    client.getSession({ selector: { $case: "sessionId", value: pick(i) } });
  const beat = (i: number) => client.heartbeat({ sessionId: pick(i) });
  rows.push(row(await run("gRPC+KV Create, sequential", N_SEQ, 1, create)));
  rows.push(row(await run(`gRPC+KV Create, ${IN_FLIGHT} in flight`, N_PAR, IN_FLIGHT, create)));
  rows.push(row(await run("gRPC+KV Get, sequential", N_SEQ, 1, get)));
  rows.push(row(await run(`gRPC+KV Get, ${IN_FLIGHT} in flight`, N_PAR, IN_FLIGHT, get)));
  rows.push(row(await run("gRPC+KV Heartbeat, sequential", N_SEQ, 1, beat)));
  rows.push(row(await run(`gRPC+KV Heartbeat, ${IN_FLIGHT} in flight`, N_PAR, IN_FLIGHT, beat)));

  const tunnel = await startQuantumTunnel({ hostname: "127.0.0.1", port: quantumPort });
  try {
    using quantumClient = new SessionClient(tunnel.address);
    const qGet = (i: number) =>
      quantumClient.getSession({ selector: { $case: "sessionId", value: pick(i) } });
    const qCreate = () => quantumClient.createSession({ userId: `q-${u++}` });
    await run("warm-up", 50, 4, qGet);
    rows.push(row(await run("gRPC/Quantum+KV Create, sequential", N_SEQ, 1, qCreate)));
    rows.push(row(await run("gRPC/Quantum+KV Get, sequential", N_SEQ, 1, qGet)));
    rows.push(
      row(await run(`gRPC/Quantum+KV Get, ${IN_FLIGHT} in flight`, N_PAR, IN_FLIGHT, qGet)),
    );
  } finally {
    await tunnel.close();
  }
  return rows;
}

/** The header and the closed-loop rows. */
function printRows(rows: string[]): void {
  console.log(
    `\nSession benchmark (Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores)\n`,
  );
  console.log(`load average: ${Deno.loadavg().map((v) => v.toFixed(2)).join(" ")}\n`);
  if (rows.length === 0) return;
  console.log("| scenario | ops | ops/s | p50 ms | p99 ms | serving CPU ms/op |");
  console.log("|---|---:|---:|---:|---:|---:|");
  for (const line of rows) console.log(line);
}

/** The closed-loop rows, then the open-loop ramps against the echo floor and the service. */
async function main(): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "aetherflow-session-bench-" });
  try {
    const rows = OPEN_LOOP_ONLY ? [] : await managerRows(dir);
    if (IN_PROCESS_ONLY) {
      printRows(rows);
      return;
    }
    const port = freePort();
    const quantumPort = freeUdpPort();
    // Declared before the child so it is disposed after it: closing a channel sends an HTTP/2
    // GOAWAY, which crashes a Deno peer after a few hundred streams (denoland/deno#36788).
    using client = new SessionClient(`127.0.0.1:${port}`);
    await using service = await startService(dir, client, port, quantumPort);
    servingPid = service.pid;
    if (!OPEN_LOOP_ONLY) rows.push(...await grpcRows(client, quantumPort));

    printRows(rows);

    // Open loop, each generator in its own process: first the platform floor (a trivial
    // grpc-js echo server), then the service.
    const ramps: Ramp[] = [];
    {
      await using echo = await startEchoServer();
      ramps.push({
        call: "echo (floor)",
        target: 1,
        steps: await generate("echo", echo.address, echo.pid),
      });
    }
    for (const [call, target] of [["GetSession", 1], ["CreateSession", 5]] as const) {
      ramps.push({ call, target, steps: await generate(call, `127.0.0.1:${port}`, service.pid) });
    }
    printOpenLoop(ramps);
    console.log(`load average at the end: ${Deno.loadavg().map((v) => v.toFixed(2)).join(" ")}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// --- open-loop generator and echo server (child processes of this script) ---

/** One open-loop ramp: a call, its p99 target (ms) and the steps run. */
interface Ramp {
  call: string;
  target: number;
  steps: Step[];
}

/** A step is sustained when (almost) every request was answered on time, without errors. */
function keptUp(step: Step): boolean {
  return step.errors === 0 && step.achieved >= step.rate * 0.95;
}

/** Run a ramp of `call` against `address` in a fresh generator process. */
async function generate(call: string, address: string, servingPid: number): Promise<Step[]> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      import.meta.filename!,
      "--generate",
      JSON.stringify({ call, address, servingPid, rates: RATES, seconds: STEP_SECONDS }),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!output.success) throw new Error(`the ${call} generator failed`);
  const lines = new TextDecoder().decode(output.stdout).split("\n").filter((line) => line !== "");
  return lines.map((line) => JSON.parse(line) as Step);
}

/** Generator process: warm up, then one open-loop step per rate (one JSON line each). */
async function generatorProcess(spec: {
  call: string;
  address: string;
  servingPid: number;
  rates: number[];
  seconds: number;
}): Promise<never> {
  const op = await prepareCall(spec.call, spec.address);
  for (const rate of spec.rates) {
    const step = await openLoop(spec.call, rate, spec.seconds, op, spec.servingPid);
    console.log(JSON.stringify(step));
    if (!keptUp(step)) break;
  }
  // Exit without closing the channel: no GOAWAY reaches the Deno server (denoland/deno#36788).
  Deno.exit(0);
}

/** A warmed-up request function for `call`. */
async function prepareCall(
  call: string,
  address: string,
): Promise<(i: number) => Promise<unknown>> {
  let op: (i: number) => Promise<unknown>;
  if (call === "echo") {
    const client = new Client(address, credentials.createInsecure());
    const payload = Buffer.alloc(ECHO_BYTES, 7);
    op = () =>
      new Promise((resolve, reject) =>
        client.makeUnaryRequest(
          ECHO_METHOD.path,
          identity,
          identity,
          payload,
          (error, reply) => (error ? reject(error) : resolve(reply)),
        )
      );
  } else {
    const client = new SessionClient(address);
    const ids: string[] = [];
    let u = 0;
    const create = async () => {
      const { session } = await client.createSession({ userId: `open-${call}-${u++}` });
      ids.push(session!.id);
      return session;
    };
    await run("warm-up", 200, 8, create);
    op = call === "CreateSession" ? create : (i) =>
      client.getSession({
        selector: { $case: "sessionId", value: ids[(i * 7919) % ids.length]! },
      });
  }
  await run("warm-up", 300, 4, op);
  return op;
}

/** Echo server process: a trivial grpc-js unary echo (no KV, no validation, no metrics). */
async function echoServerProcess(): Promise<void> {
  const server = new Server();
  server.addService({ echo: ECHO_METHOD }, {
    echo: (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) =>
      callback(null, call.request),
  });
  // Accepted like the session service's connections (TCP_NODELAY, GOAWAY guard).
  const listener = await listenGuarded(server, { hostname: "127.0.0.1", port: 0 });
  console.log(listener.port);
}

/** Start the echo server process; resolves once it listens. */
async function startEchoServer() {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", import.meta.filename!, "--echo-server"],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  const port = Number(value?.trim());
  if (!Number.isInteger(port) || port <= 0) throw new Error("the echo server did not start");
  return {
    address: `127.0.0.1:${port}`,
    pid: child.pid,
    async [Symbol.asyncDispose]() {
      child.kill("SIGTERM");
      await child.status;
      await child.stdout.cancel().catch(() => {});
    },
  };
}

function printOpenLoop(ramps: Ramp[]): void {
  console.log(
    `\nSustained open-loop load, ${STEP_SECONDS} s per step; the generator runs in its own process ` +
      'and the server in another. Latency is timed from each request\'s actual send ("sent"; ' +
      'the target applies to it) and from its intended send time ("intended", which adds the ' +
      "generator's lag: Deno timers fire a millisecond or more late).\n",
  );
  console.log(
    "| call | target req/s | achieved req/s | sent p50 / p99 ms | intended p50 / p99 ms | " +
      "send lag p99 ms | errors | serving CPU ms/op | p99 target | met (sent / intended) |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
  const summary: string[] = [];
  for (const { call, target, steps } of ramps) {
    let bestWithinTarget = 0;
    let bestKeptUp = 0;
    for (const step of steps) {
      const met = keptUp(step) && step.sent.p99 < target;
      const metIntended = keptUp(step) && step.intended.p99 < target;
      const pair = (q: { p50: number; p99: number }) => `${q.p50.toFixed(2)} / ${q.p99.toFixed(2)}`;
      console.log(
        `| ${call} | ${step.rate} | ${step.achieved.toFixed(0)} | ${pair(step.sent)} | ${
          pair(step.intended)
        } | ${step.lag.p99.toFixed(2)} | ${step.errors} | ${
          step.cpuMsPerOp.toFixed(3)
        } | < ${target} | ${met ? "yes" : "no"} / ${metIntended ? "yes" : "no"} |`,
      );
      if (met) bestWithinTarget = step.rate;
      if (keptUp(step)) bestKeptUp = step.rate;
    }
    summary.push(
      `${call}: highest rate with p99 (sent) < ${target} ms: ${
        bestWithinTarget || "none tested"
      }; ` +
        `highest rate sustained (≥ 95% achieved, no errors): ${bestKeptUp || "none tested"} req/s`,
    );
  }
  console.log(`\n${summary.join("\n")}`);
}

if (import.meta.main) {
  if (Deno.args[0] === "--echo-server") await echoServerProcess();
  else if (Deno.args[0] === "--generate") await generatorProcess(JSON.parse(Deno.args[1]!));
  else await main();
}
