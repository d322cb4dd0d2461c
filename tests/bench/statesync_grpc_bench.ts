/**
 * StateSync gRPC benchmark (`deno task bench:statesync-grpc`): acknowledged (durable) ops
 * per second through the SubmitOperations bidirectional stream — the gateway's hot path —
 * with p50/p99 latency from send to result, next to unary ApplyOperation for comparison.
 *
 * SubmitOperationBatches (many ops per message) is measured next to it.
 *
 * The server is `statesync/main.ts` in its own process with the Deno KV store in a temp
 * directory (as deployed); this process is the load generator. One run with both in one
 * process is reported too. Ops are text inserts spread over 100 documents, each made
 * against the last version this client saw for its document (so in-flight ops are stale
 * and get transformed).
 *
 * Every load uses its own session, so each op is new: `errors` counts failed ops and any
 * answered as a duplicate (a resend of an earlier load's client op id would not be applied).
 *
 * Besides throughput and latency, the table shows the server process's CPU time per op
 * (from /proc), which does not depend on how busy the machine is: 1e6 / (µs per op) is the
 * rate one dedicated core could sustain.
 *
 * Note: with Deno 2.9.6 a graceful client close after more than ~128 calls on one connection
 * can abort the server process inside nghttp2 (denoland/deno#36788); the child server may
 * print that assertion after the last scenario. The numbers are taken before.
 *
 * Options: `--quick` runs smaller counts (a smoke run); `--hot-path` runs only the stream
 * scenarios of the two child servers (SubmitOperations 1 x 1024, the batches; for quick
 * before/after comparisons); `--profile=DIR` has the child servers write CPU profiles into DIR.
 * @module
 */
import { type ClientDuplexStream, credentials, type ServiceError } from "@grpc/grpc-js";
import { freePort } from "../../kernel/testing.ts";
import * as pb from "../../proto/gen/statesync.ts";
import { HealthClient } from "../../proto/gen/health.ts";
import { opToProto, startStateSyncService, StateSyncConfigSchema } from "../../statesync/mod.ts";

const QUICK = Deno.args.includes("--quick");
/** `--hot-path`: only the SubmitOperations / SubmitOperationBatches stream scenarios. */
const HOT_PATH = Deno.args.includes("--hot-path");
/** `--profile=DIR`: the child servers write V8 CPU profiles (.cpuprofile) into DIR. */
const PROFILE_DIR = Deno.args.find((a) => a.startsWith("--profile="))?.slice("--profile=".length);
const DOCS = 100;
const STREAM_OPS = QUICK ? 5_000 : 20_000;
const UNARY_OPS = QUICK ? 1_000 : 4_000;
const WARM_UP = QUICK ? 2_000 : 10_000;

interface Result {
  label: string;
  ops: number;
  seconds: number;
  latencies: Float64Array;
  errors: number;
  /** CPU seconds the server process used during the run (user + system). */
  serverCpu?: number;
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** CPU seconds (user + system, all threads) a process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Run `load` and note how much CPU the server process `pid` spent on it. */
async function measured(pid: number, load: () => Promise<Result>): Promise<Result> {
  const before = cpuSeconds(pid);
  const result = await load();
  result.serverCpu = cpuSeconds(pid) - before;
  return result;
}

let sessions = 0;
/**
 * The last version this client saw per document, kept across loads: a client starts from
 * the version it loaded, not from 0 (that would make every first op transform against, and
 * read from the store, the document's whole history).
 */
const lastSeen = new Map<string, number>();
/** Failed ops per load and error, printed under the table. */
const errorKinds = new Map<string, number>();

function noteError(label: string, result: pb.SubmitResult): void {
  const kind = result.outcome?.$case === "error"
    ? `code ${result.outcome.value.code}: ${result.outcome.value.message.slice(0, 100)}`
    : "duplicate";
  const key = `${label} — ${kind}`;
  errorKinds.set(key, (errorKinds.get(key) ?? 0) + 1);
}

/**
 * A session id no earlier load used: client op ids restart at 0 in every load, and a
 * reused (session, client op id) pair would be answered as a resend, not applied.
 */
function freshSession(): string {
  return `bench-${++sessions}`;
}

function rpc<T>(start: (cb: (error: ServiceError | null, response: T) => void) => unknown) {
  return new Promise<T>((resolve, reject) => {
    start((error, response) => (error ? reject(error) : resolve(response)));
  });
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

function row(result: Result): string {
  const sorted = result.latencies.slice().sort();
  const rate = (result.ops / result.seconds).toFixed(0);
  const cpu = result.serverCpu === undefined
    ? "-"
    : (result.serverCpu * 1e6 / result.ops).toFixed(0);
  return `| ${result.label} | ${result.ops} | ${result.seconds.toFixed(2)} | ${rate} | ${
    percentile(sorted, 0.5).toFixed(2)
  } | ${percentile(sorted, 0.99).toFixed(2)} | ${cpu} | ${result.errors} |`;
}

const insert = opToProto([{
  path: ["text"],
  action: { type: "text_insert", offset: 0, text: "x" },
}]);

async function createDocs(client: pb.StateSyncServiceClient): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < DOCS; i++) {
    const doc = await rpc<pb.Document>((cb) =>
      client.createDocument(
        pb.CreateDocumentRequest.fromPartial({
          actorId: "bench",
          name: `doc ${i}`,
          type: pb.DocumentType.DOCUMENT_TYPE_TEXT,
        }),
        cb,
      )
    );
    ids.push(doc.id);
  }
  return ids;
}

/** `total` ops over `streams` SubmitOperations streams, `inFlight` outstanding per stream. */
async function submitLoad(
  label: string,
  client: pb.StateSyncServiceClient,
  docs: string[],
  options: { total: number; streams: number; inFlight: number },
): Promise<Result> {
  const session = freshSession();
  const latencies = new Float64Array(options.total);
  const known = lastSeen;
  let issued = 0;
  let errors = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: options.streams }, () =>
      new Promise<void>((resolve, reject) => {
        const stream: ClientDuplexStream<pb.SubmitRequest, pb.SubmitResult> = client
          .submitOperations();
        const sentAt = new Map<string, [number, number]>();
        let outstanding = 0;
        const send = () => {
          while (outstanding < options.inFlight && issued < options.total) {
            const i = issued++;
            const documentId = docs[i % docs.length]!;
            const requestId = String(i);
            sentAt.set(requestId, [i, performance.now()]);
            outstanding++;
            stream.write({
              requestId,
              apply: {
                actorId: "bench",
                operation: pb.Operation.fromPartial({
                  documentId,
                  baseVersion: known.get(documentId) ?? 0,
                  sessionId: session,
                  clientOpId: requestId,
                  components: insert,
                }),
              },
            });
          }
          if (outstanding === 0 && issued >= options.total) stream.end();
        };
        stream.on("data", (result: pb.SubmitResult) => {
          const [i, t] = sentAt.get(result.requestId)!;
          sentAt.delete(result.requestId);
          latencies[i] = performance.now() - t;
          outstanding--;
          if (result.outcome?.$case === "applied" && !result.outcome.value.duplicate) {
            const op = result.outcome.value.operation!;
            if (op.version > (known.get(op.documentId) ?? 0)) known.set(op.documentId, op.version);
          } else {
            errors++;
            noteError(label, result);
          }
          send();
        });
        stream.on("end", resolve);
        stream.on("error", reject);
        send();
      })),
  );
  return {
    label,
    ops: options.total,
    seconds: (performance.now() - started) / 1000,
    latencies,
    errors,
  };
}

/**
 * Open loop: ops issued on a fixed schedule (`rate` per second for `seconds`, spread over
 * `streams` SubmitOperations streams) without waiting for answers, so latency is measured at
 * that rate rather than at saturation. Reports the achieved rate.
 */
async function rateLoad(
  label: string,
  client: pb.StateSyncServiceClient,
  docs: string[],
  options: { rate: number; seconds: number; streams: number },
): Promise<Result> {
  const session = freshSession();
  const total = Math.round(options.rate * options.seconds);
  const latencies = new Float64Array(total);
  const known = lastSeen;
  const sentAt = new Float64Array(total);
  let answered = 0;
  let errors = 0;
  let issued = 0;
  const streams = Array.from({ length: options.streams }, () => {
    const stream: ClientDuplexStream<pb.SubmitRequest, pb.SubmitResult> = client
      .submitOperations();
    stream.on("data", (result: pb.SubmitResult) => {
      const i = Number(result.requestId);
      latencies[i] = performance.now() - sentAt[i]!;
      answered++;
      if (result.outcome?.$case === "applied" && !result.outcome.value.duplicate) {
        const op = result.outcome.value.operation!;
        if (op.version > (known.get(op.documentId) ?? 0)) known.set(op.documentId, op.version);
      } else {
        errors++;
        noteError(label, result);
      }
    });
    return stream;
  });
  const ended = streams.map((stream) =>
    new Promise<void>((resolve, reject) => {
      stream.on("end", resolve);
      stream.on("error", reject);
    })
  );
  const started = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.min(total, Math.floor((performance.now() - started) / 1000 * options.rate));
      while (issued < due) {
        const i = issued++;
        const documentId = docs[i % docs.length]!;
        sentAt[i] = performance.now();
        streams[i % streams.length]!.write({
          requestId: String(i),
          apply: {
            actorId: "bench",
            operation: pb.Operation.fromPartial({
              documentId,
              baseVersion: known.get(documentId) ?? 0,
              sessionId: session,
              clientOpId: String(i),
              components: insert,
            }),
          },
        });
      }
      if (issued >= total) {
        clearInterval(timer);
        resolve();
      }
    }, 5);
  });
  for (const stream of streams) stream.end();
  await Promise.all(ended);
  const seconds = (performance.now() - started) / 1000;
  return { label, ops: answered, seconds, latencies, errors };
}

/** `total` ops in SubmitOperationBatches messages of `batch` ops, `inFlight` batches outstanding. */
async function batchLoad(
  label: string,
  client: pb.StateSyncServiceClient,
  docs: string[],
  options: { total: number; batch: number; inFlight: number },
): Promise<Result> {
  const session = freshSession();
  const latencies = new Float64Array(options.total);
  const known = lastSeen;
  let errors = 0;
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    const stream: ClientDuplexStream<pb.SubmitBatch, pb.SubmitBatchResult> = client
      .submitOperationBatches();
    const sentAt: number[] = [];
    let issued = 0;
    let outstanding = 0;
    const send = () => {
      while (outstanding < options.inFlight && issued < options.total) {
        const requests: pb.SubmitRequest[] = [];
        const now = performance.now();
        for (let k = 0; k < options.batch && issued < options.total; k++) {
          const i = issued++;
          const documentId = docs[i % docs.length]!;
          sentAt[i] = now;
          requests.push({
            requestId: String(i),
            apply: {
              actorId: "bench",
              operation: pb.Operation.fromPartial({
                documentId,
                baseVersion: known.get(documentId) ?? 0,
                sessionId: session,
                clientOpId: String(i),
                components: insert,
              }),
            },
          });
        }
        outstanding++;
        stream.write({ requests });
      }
      if (outstanding === 0 && issued >= options.total) stream.end();
    };
    stream.on("data", (answer: pb.SubmitBatchResult) => {
      const now = performance.now();
      for (const result of answer.results) {
        const i = Number(result.requestId);
        latencies[i] = now - sentAt[i]!;
        if (result.outcome?.$case === "applied" && !result.outcome.value.duplicate) {
          const op = result.outcome.value.operation!;
          if (op.version > (known.get(op.documentId) ?? 0)) known.set(op.documentId, op.version);
        } else {
          errors++;
          noteError(label, result);
        }
      }
      outstanding--;
      send();
    });
    stream.on("end", resolve);
    stream.on("error", reject);
    send();
  });
  return {
    label,
    ops: options.total,
    seconds: (performance.now() - started) / 1000,
    latencies,
    errors,
  };
}

/** `total` unary ApplyOperation calls with `concurrency` in flight. */
async function unaryLoad(
  label: string,
  client: pb.StateSyncServiceClient,
  docs: string[],
  total: number,
  concurrency: number,
): Promise<Result> {
  const session = freshSession();
  const latencies = new Float64Array(total);
  const known = lastSeen;
  let next = 0;
  let errors = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < total) {
      const i = next++;
      const documentId = docs[i % docs.length]!;
      const t = performance.now();
      try {
        const result = await rpc<pb.ApplyOperationResponse>((cb) =>
          client.applyOperation({
            actorId: "bench",
            operation: pb.Operation.fromPartial({
              documentId,
              baseVersion: known.get(documentId) ?? 0,
              sessionId: session,
              clientOpId: String(i),
              components: insert,
            }),
          }, cb)
        );
        if (result.duplicate) errors++;
        if (result.version > (known.get(documentId) ?? 0)) known.set(documentId, result.version);
      } catch {
        errors++;
      }
      latencies[i] = performance.now() - t;
    }
  }));
  return { label, ops: total, seconds: (performance.now() - started) / 1000, latencies, errors };
}

/**
 * Fan-out: `subscribers` SubscribeDocument streams on one document while `total` ops are
 * submitted to it (one SubmitOperations stream, 256 in flight). Reports deliveries per
 * second and the latency from submit to receipt by a subscriber.
 */
async function fanOutLoad(
  label: string,
  client: pb.StateSyncServiceClient,
  options: { subscribers: number; total: number },
): Promise<Result> {
  const session = freshSession();
  const doc = await rpc<pb.Document>((cb) =>
    client.createDocument(
      pb.CreateDocumentRequest.fromPartial({
        actorId: "bench",
        name: "fan-out",
        type: pb.DocumentType.DOCUMENT_TYPE_TEXT,
      }),
      cb,
    )
  );
  const deliveries = options.subscribers * options.total;
  const latencies = new Float64Array(deliveries);
  const sentAt = new Float64Array(options.total);
  let received = 0;
  let allReceived!: () => void;
  const done = new Promise<void>((resolve) => (allReceived = resolve));
  const streams = await Promise.all(
    Array.from(
      { length: options.subscribers },
      (_, s) =>
        new Promise<ReturnType<typeof client.subscribeDocument>>((resolve, reject) => {
          const stream = client.subscribeDocument(
            pb.SubscribeDocumentRequest.fromPartial({
              actorId: "bench",
              documentId: doc.id,
              subscriberId: `s${s}`,
            }),
          );
          stream.on("data", (event: pb.DocumentEvent) => {
            if (event.type === pb.EventType.EVENT_TYPE_SUBSCRIBED) {
              resolve(stream);
            }
            if (event.payload?.$case !== "operation") return;
            const i = Number(event.payload.value.clientOpId);
            latencies[received++] = performance.now() - sentAt[i]!;
            if (received === deliveries) allReceived();
          });
          stream.on("error", (error: ServiceError) => {
            if (error.code !== 1) reject(error); // 1 = CANCELLED by us at the end
          });
        }),
    ),
  );
  const started = performance.now();
  let version = 0;
  await new Promise<void>((resolve, reject) => {
    const stream: ClientDuplexStream<pb.SubmitRequest, pb.SubmitResult> = client
      .submitOperations();
    let issued = 0;
    let outstanding = 0;
    const send = () => {
      while (outstanding < 256 && issued < options.total) {
        const i = issued++;
        outstanding++;
        sentAt[i] = performance.now();
        stream.write({
          requestId: String(i),
          apply: {
            actorId: "bench",
            operation: pb.Operation.fromPartial({
              documentId: doc.id,
              baseVersion: version,
              sessionId: session,
              clientOpId: String(i),
              components: insert,
            }),
          },
        });
      }
      if (outstanding === 0 && issued >= options.total) stream.end();
    };
    stream.on("data", (result: pb.SubmitResult) => {
      outstanding--;
      if (result.outcome?.$case === "applied" && !result.outcome.value.duplicate) {
        version = Math.max(version, result.outcome.value.version);
      }
      send();
    });
    stream.on("end", resolve);
    stream.on("error", reject);
    send();
  });
  await done;
  const seconds = (performance.now() - started) / 1000;
  for (const stream of streams) stream.cancel();
  return { label, ops: deliveries, seconds, latencies, errors: 0 };
}

async function waitServing(address: string): Promise<void> {
  const health = new HealthClient(address, credentials.createInsecure());
  try {
    for (let attempt = 0; attempt < 200; attempt++) {
      try {
        await rpc((cb) => health.check({ service: "" }, cb));
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    throw new Error("statesync service did not start");
  } finally {
    health.close();
  }
}

async function scenarios(
  address: string,
  where: string,
  all: boolean,
  pid: number,
): Promise<string[]> {
  const client = new pb.StateSyncServiceClient(address, credentials.createInsecure());
  try {
    const docs = await createDocs(client);
    // Warm-up (JIT, KV file, documents loaded).
    await submitLoad("warm-up", client, docs, { total: WARM_UP, streams: 1, inFlight: 256 });
    const rows: string[] = [];
    const plans = all
      ? [{ streams: 1, inFlight: 256 }, { streams: 1, inFlight: 1024 }, {
        streams: 4,
        inFlight: 256,
      }]
      : [{ streams: 1, inFlight: 1024 }];
    for (const plan of plans) {
      const label =
        `${where}: SubmitOperations, ${plan.streams} stream(s) x ${plan.inFlight} in flight`;
      const options = { total: STREAM_OPS, ...plan };
      rows.push(row(await measured(pid, () => submitLoad(label, client, docs, options))));
    }
    for (const plan of [{ batch: 64, inFlight: 16 }, { batch: 256, inFlight: 8 }]) {
      const label =
        `${where}: SubmitOperationBatches, ${plan.batch} ops/message x ${plan.inFlight} ` +
        `in flight`;
      const options = { total: STREAM_OPS, ...plan };
      rows.push(row(await measured(pid, () => batchLoad(label, client, docs, options))));
    }
    if (all) {
      const fanOut = { subscribers: 50, total: QUICK ? 500 : 2000 };
      const fanLabel =
        `${where}: fan-out, ${fanOut.subscribers} subscribers x ${fanOut.total} ops (ops = deliveries)`;
      rows.push(row(await measured(pid, () => fanOutLoad(fanLabel, client, fanOut))));
      for (const rate of [5_000, 10_000]) {
        const label = `${where}: SubmitOperations open loop at ${rate} ops/s, 4 streams`;
        const options = { rate, seconds: QUICK ? 1 : 2, streams: 4 };
        rows.push(row(await measured(pid, () => rateLoad(label, client, docs, options))));
      }
      const label = `${where}: unary ApplyOperation, 32 in flight`;
      rows.push(row(await measured(pid, () => unaryLoad(label, client, docs, UNARY_OPS, 32))));
    }
    return rows;
  } finally {
    client.close();
  }
}

async function childServer(storage: "kv" | "memory", dataDir: string) {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      ...(PROFILE_DIR === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`]),
      new URL("../../statesync/main.ts", import.meta.url).pathname,
    ],
    env: {
      AETHERFLOW_STATESYNC_PORT: String(port),
      AETHERFLOW_STATESYNC_DATA_DIR: dataDir,
      AETHERFLOW_STATESYNC_STORAGE: storage,
      AETHERFLOW_STATESYNC_LOG_LEVEL: "warn",
    },
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const address = `127.0.0.1:${port}`;
  try {
    await waitServing(address);
  } catch (error) {
    child.kill("SIGKILL");
    await child.status;
    throw error;
  }
  return {
    address,
    pid: child.pid,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

const dataDir = await Deno.makeTempDir({ prefix: "aetherflow-statesync-bench-" });
const rows: string[] = [];
try {
  // 1. Server in its own process (as deployed), durable KV store, then the memory store
  //    (no durability) to show what the transport and engine cost without the disk.
  for (const storage of ["kv", "memory"] as const) {
    const server = await childServer(storage, `${dataDir}/${storage}`);
    try {
      const where = `2 processes, ${storage}`;
      const all = storage === "kv" && !HOT_PATH;
      rows.push(...await scenarios(server.address, where, all, server.pid));
    } finally {
      await server.stop();
    }
  }
  // 2. Server and client in one process.
  if (!HOT_PATH) {
    const config = StateSyncConfigSchema.parse({
      port: 0,
      storage: "kv",
      dataDir: `${dataDir}/inproc`,
      logLevel: "warn",
    });
    const service = await startStateSyncService(config);
    try {
      const client = new pb.StateSyncServiceClient(service.address, credentials.createInsecure());
      const docs = await createDocs(client);
      await submitLoad("warm-up", client, docs, { total: WARM_UP, streams: 1, inFlight: 256 });
      const label = "1 process (client + server), kv: SubmitOperations, 1 stream x 1024 in flight";
      const options = { total: STREAM_OPS, streams: 1, inFlight: 1024 };
      rows.push(row(await measured(Deno.pid, () => submitLoad(label, client, docs, options))));
      client.close();
    } finally {
      await service.shutdown();
    }
  }
} finally {
  await Deno.remove(dataDir, { recursive: true });
}

const load = Deno.loadavg().map((n) => n.toFixed(1)).join(" ");
console.log(
  `\nStateSync gRPC benchmark — Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores, ` +
    `load average ${load} at the end,`,
);
console.log(
  `${DOCS} documents, text inserts, each stale by the ops in flight on its document\n`,
);
console.log("| scenario | ops | s | ops/s | p50 ms | p99 ms | server CPU µs/op | errors |");
console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
for (const line of rows) console.log(line);
if (errorKinds.size > 0) console.log("\nErrors:");
for (const [kind, count] of errorKinds) console.log(`- ${count} × ${kind}`);
