/**
 * StateSync document engine benchmark (`deno task bench:statesync`): the in-process
 * {@link DocumentManager} on the Deno KV store in a temp file (every acknowledged op is
 * committed to disk).
 *
 * 1. Spread: 100 documents, 10 writers each (1000 applies in flight; `SPREAD_WRITERS`
 *    changes it), each writer sending its next op at the version of its last ack.
 *    Target ≥ 10,000 acknowledged ops/s.
 * 2. Hot document: 50 concurrent writers on one document, each sending at the version of
 *    its own last ack, so every op is stale by up to 49 versions and is transformed.
 *    Target ≥ 5,000 acknowledged ops/s.
 * 3. Load a document with 100,000 ops of history (snapshot every 100 ops) in a fresh
 *    manager: target < 200 ms. Also a read at a past version (nearest snapshot + replay).
 * 4. Paced (the end-to-end benchmark's workload without the network): 100 writers on 10
 *    text documents, one-character inserts at a fixed offered rate (open loop; default
 *    1,000 and 2,000 ops/s, `--paced-rates=...`), each sent at the version of the writer's
 *    last ack. Reports the ack latency the engine and its durable KV commit add, the share
 *    of an end-to-end op's 15 ms p99 budget (issue 12) that is spent here.
 *
 * Options: `--quick` runs smaller counts (for a smoke run); `--only=spread,hot,history,paced`.
 * @module
 */
import { newId } from "../../kernel/mod.ts";
import { apply as applyOp } from "../../statesync/json0/mod.ts";
import {
  type DocumentHead,
  DocumentManager,
  type DocumentRecord,
  type Json,
  KvDocumentStore,
  type Op,
  type OperationRecord,
  type Snapshot,
} from "../../statesync/mod.ts";

const QUICK = Deno.args.includes("--quick");
const SPREAD_OPS = QUICK ? 8_000 : 40_000;
const HOT_OPS = QUICK ? 5_000 : 25_000;
const HISTORY_OPS = QUICK ? 20_000 : 100_000;
const SPREAD_WRITERS = Number(Deno.env.get("SPREAD_WRITERS") ?? 1000);
/** `--only=spread,hot,history,paced` runs just those scenarios (for profiling one of them). */
const ONLY = Deno.args.find((a) => a.startsWith("--only="))?.slice("--only=".length).split(",");
const runs = (scenario: string) => ONLY === undefined || ONLY.includes(scenario);

/** CPU time (user + system) of this process in ms, from /proc (Linux); NaN elsewhere. */
function cpuMs(stat = "/proc/self/stat"): number {
  try {
    const fields = Deno.readTextFileSync(stat).split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

/** CPU ms of the main (JavaScript) thread alone; the rest is KV's SQLite and other threads. */
function mainThreadCpuMs(): number {
  return cpuMs(`/proc/self/task/${Deno.pid}/stat`);
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

interface Row {
  scenario: string;
  ops: number;
  seconds: number;
  /** Process CPU ms (all threads, including Deno KV's SQLite thread) during the run. */
  cpu: number;
  /** CPU ms of the main (JS) thread alone. */
  mainCpu: number;
  latencies: number[];
  target: string;
  extra?: string;
}

const rows: Row[] = [];
const dir = await Deno.makeTempDir({ prefix: "statesync-bench-" });

async function openManager(name: string) {
  const store = await KvDocumentStore.open(`${dir}/${name}.kv`);
  const manager = new DocumentManager(store, { snapshotEvery: 100 });
  return { store, manager };
}

/** Run `writers` closed-loop writers until `total` ops are acknowledged. */
async function drive(
  writers: number,
  total: number,
  send: (writer: number, i: number, base: number) => Promise<number>,
): Promise<{ seconds: number; latencies: number[]; cpu: number; mainCpu: number }> {
  const latencies: number[] = [];
  let issued = 0;
  const cpu0 = cpuMs();
  const main0 = mainThreadCpuMs();
  const start = performance.now();
  await Promise.all(Array.from({ length: writers }, async (_, w) => {
    let base = 0;
    while (issued < total) {
      const i = issued++;
      const t0 = performance.now();
      base = await send(w, i, base);
      latencies.push(performance.now() - t0);
    }
  }));
  return {
    seconds: (performance.now() - start) / 1000,
    latencies,
    cpu: cpuMs() - cpu0,
    mainCpu: mainThreadCpuMs() - main0,
  };
}

// 1. 100 documents.
if (runs("spread")) {
  const { store, manager } = await openManager("spread");
  const docs: DocumentRecord[] = [];
  for (let i = 0; i < 100; i++) {
    docs.push(
      await manager.create("bench", {
        name: `doc ${i}`,
        type: "json",
        content: { count: 0, text: "", cells: {} },
      }),
    );
  }
  const { seconds, latencies, cpu, mainCpu } = await drive(
    SPREAD_WRITERS,
    SPREAD_OPS,
    async (w, i, base) => {
      const doc = docs[w % 100]!;
      const op: Op = i % 2 === 0
        ? [{ path: ["count"], action: { type: "increment", delta: 1 } }]
        : [{ path: ["cells", `w${w}`], action: { type: "set", value: i } }];
      const result = await manager.apply("bench", {
        documentId: doc.id,
        baseVersion: base,
        sessionId: `w${w}`,
        clientOpId: `${i}`,
        op,
      });
      return result.version;
    },
  );
  const stats = await manager.stats();
  rows.push({
    scenario: `100 documents, ${SPREAD_WRITERS} writers`,
    ops: latencies.length,
    seconds,
    cpu,
    mainCpu,
    latencies,
    target: "≥ 10,000 ops/s",
    extra: `transforms ${stats.transforms}`,
  });
  if (stats.operations !== latencies.length) throw new Error("op count mismatch");
  await manager.close();
  await store.close();
}

// 2. One hot document, 50 writers at stale versions.
if (runs("hot")) {
  const { store, manager } = await openManager("hot");
  const doc = await manager.create("bench", {
    name: "hot",
    type: "json",
    content: { counters: Array.from({ length: 10 }, () => 0), cells: {} },
  });
  const { seconds, latencies, cpu, mainCpu } = await drive(50, HOT_OPS, async (w, i, base) => {
    const op: Op = i % 2 === 0
      ? [{ path: ["counters", w % 10], action: { type: "increment", delta: 1 } }]
      : [{ path: ["cells", `w${w}`], action: { type: "set", value: i } }];
    const result = await manager.apply("bench", {
      documentId: doc.id,
      baseVersion: base,
      sessionId: `w${w}`,
      clientOpId: `${i}`,
      op,
    });
    return result.version;
  });
  const stats = await manager.stats();
  const final = await manager.get("bench", doc.id);
  const sum = (final.content as { counters: number[] }).counters.reduce((a, b) => a + b, 0);
  if (final.version !== latencies.length || sum !== Math.ceil(latencies.length / 2)) {
    throw new Error(`hot document lost ops: version ${final.version}, increments ${sum}`);
  }
  rows.push({
    scenario: "1 hot document, 50 stale writers",
    ops: latencies.length,
    seconds,
    cpu,
    mainCpu,
    latencies,
    target: "≥ 5,000 ops/s",
    extra: `transforms ${stats.transforms} (${
      (stats.transforms / latencies.length).toFixed(1)
    }/op)`,
  });
  await manager.close();
  await store.close();
}

// 3. Load a document with a long history. The history is written straight through the
// store in large commits (with a snapshot every 100 versions, as the manager makes them):
// writing 100k ops through 200 stale writers would spend most of the run on transforms.
if (runs("history")) {
  const store = await KvDocumentStore.open(`${dir}/history.kv`);
  const setup = new DocumentManager(store, { snapshotEvery: 100 });
  const doc = await setup.create("bench", {
    name: "long",
    type: "json",
    content: { count: 0, log: "" },
  });
  await setup.close();
  let head: DocumentHead = (await store.getHead(doc.id))!;
  let content: Json = { count: 0, log: "" };
  const t0 = performance.now();
  for (let version = 0; version < HISTORY_OPS;) {
    const ops: OperationRecord[] = [];
    const snapshots: Snapshot[] = [];
    for (let i = 0; i < 400 && version < HISTORY_OPS; i++) {
      version++;
      const op: Op = version % 2 === 0
        ? [{ path: ["count"], action: { type: "increment", delta: 1 } }]
        : [{ path: ["log"], action: { type: "text_insert", offset: 0, text: "x" } }];
      content = applyOp(content, op);
      ops.push({
        id: newId(),
        documentId: doc.id,
        baseVersion: version - 1,
        version,
        authorId: "bench",
        sessionId: "history",
        clientOpId: `${version}`,
        timestamp: Date.now(),
        op,
      });
      if (version % 100 === 0) snapshots.push({ version, content });
    }
    const next: DocumentHead = { ...head, version, updatedAt: Date.now() };
    const [outcome] = await store.commit([{
      documentId: doc.id,
      expectedVersion: head.version,
      head: next,
      ops,
      dedupe: ops.map((o) => ({
        sessionId: o.sessionId,
        clientOpId: o.clientOpId,
        operationId: o.id,
        version: o.version,
        held: false,
        conflictIds: [],
      })),
      conflicts: [],
    }]);
    if (outcome !== "committed") throw new Error("history commit failed");
    for (const snapshot of snapshots) await store.putSnapshot(doc.id, snapshot);
    head = next;
  }
  const writeSeconds = (performance.now() - t0) / 1000;
  await store.close();
  const loads: number[] = [];
  const past: number[] = [];
  const pastVersion = HISTORY_OPS / 2 + 57;
  for (let round = 0; round < 5; round++) {
    const fresh = await openManager("history");
    let t1 = performance.now();
    const loaded = await fresh.manager.get("bench", doc.id);
    loads.push(performance.now() - t1);
    if (
      loaded.version !== HISTORY_OPS || JSON.stringify(loaded.content) !== JSON.stringify(content)
    ) {
      throw new Error(`loaded version ${loaded.version} differs from the written history`);
    }
    t1 = performance.now();
    const old = await fresh.manager.get("bench", doc.id, pastVersion);
    past.push(performance.now() - t1);
    if ((old.content as { count: number }).count !== Math.floor(pastVersion / 2)) {
      throw new Error("read at a past version is wrong");
    }
    await fresh.manager.close();
    await fresh.store.close();
  }
  loads.sort((a, b) => a - b);
  past.sort((a, b) => a - b);
  console.log(
    `\nHistory: wrote ${HISTORY_OPS} ops in ${writeSeconds.toFixed(1)} s (direct store commits).` +
      `\nLoad the document at version ${HISTORY_OPS} (fresh manager and KV handle, 5 runs):` +
      ` median ${percentile(loads, 0.5).toFixed(1)} ms, max ${loads[4]!.toFixed(1)} ms` +
      ` (target < 200 ms); read at version ${pastVersion}:` +
      ` median ${percentile(past, 0.5).toFixed(1)} ms`,
  );
}

// 4. Paced: the end-to-end workload's rates, in process.
const PACED_RATES = (Deno.args.find((a) => a.startsWith("--paced-rates="))?.slice(
  "--paced-rates=".length,
) ?? "1000,2000").split(",").map(Number);
const PACED_SECONDS = QUICK ? 2 : 5;
if (runs("paced")) {
  for (const rate of PACED_RATES) {
    const { store, manager } = await openManager(`paced-${rate}`);
    const docs: DocumentRecord[] = [];
    for (let i = 0; i < 10; i++) {
      docs.push(await manager.create("bench", { name: `doc ${i}`, type: "text" }));
    }
    const writers = 100;
    // Version of each writer's last ack; every op inserts one character, so the text at
    // that version is that long.
    const seen = new Array<number>(writers).fill(0);
    const latencies: number[] = [];
    const pending: Promise<void>[] = [];
    const total = rate * PACED_SECONDS;
    const cpu0 = cpuMs();
    const main0 = mainThreadCpuMs();
    const start = performance.now();
    let sent = 0;
    while (sent < total) {
      const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000));
      for (; sent < due; sent++) {
        const w = sent % writers;
        const d = w % docs.length;
        const op: Op = [{
          path: ["text"],
          action: {
            type: "text_insert",
            offset: Math.floor(Math.random() * (seen[w]! + 1)),
            text: "x",
          },
        }];
        const t0 = performance.now();
        pending.push(
          manager.apply("bench", {
            documentId: docs[d]!.id,
            baseVersion: seen[w]!,
            sessionId: `w${w}`,
            clientOpId: `${sent}`,
            op,
          }).then((result) => {
            latencies.push(performance.now() - t0);
            seen[w] = Math.max(seen[w]!, result.version);
          }),
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await Promise.all(pending);
    const seconds = (performance.now() - start) / 1000;
    const cpu = cpuMs() - cpu0;
    const mainCpu = mainThreadCpuMs() - main0;
    const max = latencies.reduce((m, v) => Math.max(m, v), 0);
    rows.push({
      scenario: `paced ${rate} ops/s, 10 text documents, 100 writers`,
      ops: latencies.length,
      seconds,
      cpu,
      mainCpu,
      latencies,
      target: "(latency share)",
      extra: `max ${max.toFixed(1)} ms`,
    });
    await manager.close();
    await store.close();
  }
}

await Deno.remove(dir, { recursive: true });

console.log(
  "\nCPU µs/op counts every thread of this process (JS and Deno KV's SQLite writer); on a busy" +
    "\nmachine ops/s is bounded by the CPU share the process gets, 1e6 / (CPU µs/op) per core." +
    "\nJS µs/op is the main thread alone (the rest runs on KV's thread, in parallel).",
);
console.log(
  "\n| scenario | ops | ops/s | p50 ms | p99 ms | CPU µs/op | JS µs/op | target | notes |",
);
console.log("|---|---:|---:|---:|---:|---:|---:|---|---|");
for (const row of rows) {
  const sorted = [...row.latencies].sort((a, b) => a - b);
  console.log(
    `| ${row.scenario} | ${row.ops} | ${Math.round(row.ops / row.seconds)} | ${
      percentile(sorted, 0.5).toFixed(2)
    } | ${percentile(sorted, 0.99).toFixed(2)} | ${Math.round((row.cpu * 1000) / row.ops)} | ${
      Math.round((row.mainCpu * 1000) / row.ops)
    } | ${row.target} | ${row.extra ?? ""} |`,
  );
}
