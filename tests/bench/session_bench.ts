/**
 * Session service benchmark (`deno task bench:session`).
 *
 * 1. CreateSession / GetSession / Heartbeat, sequential and with 32 in flight, through
 *    gRPC over TCP against the Deno KV store, and through the in-process manager alone (KV,
 *    with and without group commits) so the gRPC overhead is visible.
 * 2. Sustained open-loop load through gRPC + KV: requests are issued on a fixed schedule
 *    without waiting for answers, at 500 req/s and then at increasing rates until p99 misses
 *    the target or the achieved rate falls behind; reports the maximum sustained rate.
 *
 * The gRPC server is `session/main.ts` in its own process (as deployed); the load generator
 * is this process. The gRPC/Quantum rows reach the same server through a loopback TCP tunnel
 * into Quantum (`startQuantumTunnel`), as the gateway does with `transport: quantum`.
 *
 * Options: `--quick` runs smaller counts (for a smoke run).
 * @module
 */
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
const STEP_SECONDS = QUICK ? 1 : 2;

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

/**
 * Open loop at `rate` req/s for `seconds`: requests go out on schedule whether or not earlier
 * ones were answered (1 ms timer ticks), latency is measured from each request's send.
 */
async function sustained(
  rate: number,
  seconds: number,
  op: (i: number) => Promise<unknown>,
): Promise<{ rate: number; achieved: number; p50: number; p99: number; errors: number }> {
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const latencies: number[] = [];
  const pending: Promise<void>[] = [];
  let errors = 0;
  const start = performance.now();
  let sent = 0;
  while (sent < total) {
    const now = performance.now();
    while (sent < total && start + sent * interval <= now) {
      const scheduled = start + sent * interval;
      const i = sent++;
      pending.push(
        op(i).then(
          () => void latencies.push(performance.now() - scheduled),
          () => void errors++,
        ),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(pending);
  const elapsed = (performance.now() - start) / 1000;
  const sorted = latencies.sort((a, b) => a - b);
  return {
    rate,
    achieved: latencies.length / elapsed,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    errors,
  };
}

const dir = await Deno.makeTempDir({ prefix: "aetherflow-session-bench-" });
const header = "| scenario | ops | ops/s | p50 ms | p99 ms | serving CPU ms/op |\n" +
  "|---|---:|---:|---:|---:|---:|";
const rows: string[] = [];
try {
  // --- in-process manager over KV (group commit on / off) ---
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
    rows.push(row(await run(`${tag} Get, sequential`, N_SEQ, 1, (i) => manager.get(pick(i)))));
    rows.push(
      row(
        await run(
          `${tag} Get, ${IN_FLIGHT} in flight`,
          N_PAR,
          IN_FLIGHT,
          (i) => manager.get(pick(i)),
        ),
      ),
    );
    rows.push(
      row(await run(`${tag} Heartbeat, sequential`, N_SEQ, 1, (i) => manager.heartbeat(pick(i)))),
    );
    rows.push(
      row(
        await run(
          `${tag} Heartbeat, ${IN_FLIGHT} in flight`,
          N_PAR,
          IN_FLIGHT,
          (i) => manager.heartbeat(pick(i)),
        ),
      ),
    );
  }

  // --- gRPC over TCP, KV store: the real service in its own process ---
  const port = freePort();
  const quantumPort = freeUdpPort();
  // Declared before the child so it is disposed after it: closing a channel sends an HTTP/2
  // GOAWAY, which crashes a Deno peer after a few hundred streams (denoland/deno#36788).
  using client = new SessionClient(`127.0.0.1:${port}`);
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
  servingPid = child.pid;
  await using _child = {
    async [Symbol.asyncDispose]() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
  await waitReady(client);
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

  // --- the same server over Quantum: loopback TCP tunnel -> Quantum (UDP) -> server ---
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

  console.log(
    `\nSession benchmark (Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores)\n`,
  );
  console.log(`load average: ${Deno.loadavg().map((v) => v.toFixed(2)).join(" ")}\n`);
  console.log(header);
  for (const line of rows) console.log(line);

  // --- sustained open-loop load ---
  console.log(`\nSustained open-loop load through gRPC + KV (${STEP_SECONDS} s per step)\n`);
  console.log(
    "| call | target req/s | achieved req/s | p50 ms | p99 ms | errors | p99 target | met |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---|");
  const targets = { GetSession: 1, CreateSession: 5 } as const;
  const summary: string[] = [];
  for (const [name, target] of Object.entries(targets)) {
    const op = name === "GetSession" ? get : create;
    let bestWithinTarget = 0;
    let bestKeptUp = 0;
    for (const rate of [250, 500, 1000, 1500, 2000, 3000]) {
      const r = await sustained(rate, STEP_SECONDS, op);
      const keptUp = r.errors === 0 && r.achieved >= rate * 0.95;
      const met = keptUp && r.p99 < target;
      console.log(
        `| ${name} | ${rate} | ${r.achieved.toFixed(0)} | ${r.p50.toFixed(2)} | ${
          r.p99.toFixed(2)
        } | ${r.errors} | < ${target} | ${met ? "yes" : "no"} |`,
      );
      if (met) bestWithinTarget = rate;
      if (!keptUp) break;
      bestKeptUp = rate;
    }
    summary.push(
      `${name}: highest rate with p99 < ${target} ms: ${bestWithinTarget || "none tested"}; ` +
        `highest rate sustained (≥ 95% achieved, no errors): ${bestKeptUp || "none tested"} req/s`,
    );
  }
  console.log(`\n${summary.join("\n")}`);
  console.log(`load average at the end: ${Deno.loadavg().map((v) => v.toFixed(2)).join(" ")}`);
} finally {
  await Deno.remove(dir, { recursive: true });
}
