/**
 * Distributed mode vs embedded: the same work on Deno KV and on a real etcd (loopback,
 * started here), side by side. `deno task bench:etcd`.
 *
 * - statesync: ops/s through `DocumentManager.apply` on one document, 64 writers in flight
 * - session: insert, get and heartbeat-style update latency (sequential) and inserts/s (64 in
 *   flight)
 * - locks: acquire + release round trip on etcd (the KV deployment's locks are in memory)
 * @module
 */
import { connectEtcd } from "../../kernel/etcd.ts";
import { startEtcd, tempDir } from "../../kernel/testing.ts";
import { DocumentManager } from "../../statesync/documents.ts";
import { EtcdDocumentStore } from "../../statesync/store_etcd.ts";
import { KvDocumentStore } from "../../statesync/store_kv.ts";
import type { DocumentStore } from "../../statesync/store.ts";
import { EtcdLockManager } from "../../statesync/lock_etcd.ts";
import { LockManager } from "../../statesync/locks.ts";
import { EtcdSessionStore } from "../../session/etcd_store.ts";
import { KvSessionStore } from "../../session/kv_store.ts";
import type { SessionStore } from "../../session/store.ts";
import { emptyStats, type StoredSession } from "../../session/model.ts";
import { newId } from "../../kernel/mod.ts";

const OPS = Number(Deno.env.get("BENCH_OPS") ?? 2000);
const SESSIONS = Number(Deno.env.get("BENCH_SESSIONS") ?? 500);

function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

async function applyThroughput(store: DocumentStore): Promise<number> {
  const manager = new DocumentManager(store, { maxRetries: 1000 });
  const doc = await manager.create("bench", { name: "b", type: "json", content: { n: 0 } });
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: 64 }, async (_, w) => {
    let seen = 0;
    while (next < OPS) {
      const i = next++;
      const result = await manager.apply("bench", {
        documentId: doc.id,
        baseVersion: seen,
        sessionId: `w${w}`,
        clientOpId: `c${i}`,
        op: [{ path: ["n"], action: { type: "increment", delta: 1 } }],
      });
      seen = result.version;
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  await manager.close();
  return OPS / seconds;
}

function record(now: number): StoredSession {
  return {
    id: newId(),
    userId: `u-${crypto.randomUUID()}`,
    connectionId: "",
    clientIp: "127.0.0.1",
    clientPort: 1,
    serverAddress: "",
    state: "active",
    createdAt: now,
    lastActiveAt: now,
    expiresAt: now + 600_000,
    ttlMs: 600_000,
    metadata: {},
    stats: emptyStats(),
    tokenHash: crypto.randomUUID(),
    rotatedTokenHashes: [],
  };
}

async function sessionLatency(store: SessionStore) {
  const insert: number[] = [];
  const get: number[] = [];
  const update: number[] = [];
  for (let i = 0; i < SESSIONS / 5; i++) {
    const now = Date.now();
    const r = record(now);
    let t = performance.now();
    await store.insert(r, { now, maxPerUser: 10, onLimit: "refuse" });
    insert.push(performance.now() - t);
    t = performance.now();
    await store.get(r.id, now);
    get.push(performance.now() - t);
    t = performance.now();
    await store.update(r.id, now, (s) => ({ ...s, expiresAt: now + 900_000 }));
    update.push(performance.now() - t);
  }
  const started = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (next++ < SESSIONS) {
      const now = Date.now();
      await store.insert(record(now), { now, maxPerUser: 10, onLimit: "refuse" });
    }
  }));
  const perSecond = SESSIONS / ((performance.now() - started) / 1000);
  return { insert, get, update, perSecond };
}

async function lockRoundTrips(
  acquire: () => Promise<{ id: string; documentId: string }>,
  release: (lock: { id: string; documentId: string }) => Promise<unknown>,
): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < 100; i++) {
    const t = performance.now();
    await release(await acquire());
    samples.push(performance.now() - t);
  }
  return samples;
}

if (import.meta.main) {
  await using dir = await tempDir("aetherflow-bench-");
  await using server = await startEtcd();
  const etcd = await connectEtcd({ endpoints: [server.endpoint], prefix: "/bench" });
  const rows: string[][] = [];
  const cpu = (await Deno.readTextFile("/proc/cpuinfo").catch(() => ""))
    .match(/model name\s*:\s*(.+)/)?.[1] ?? "unknown CPU";
  console.log(
    `# etcd vs Deno KV — ${cpu}, ${navigator.hardwareConcurrency} cores, ${Deno.version.deno}`,
  );

  const kvDocs = await KvDocumentStore.open(`${dir.path}/docs.kv`);
  const etcdDocs = new EtcdDocumentStore(etcd);
  const kvOps = await applyThroughput(kvDocs);
  const etcdOps = await applyThroughput(etcdDocs);
  rows.push(["statesync apply, 1 doc, 64 writers (ops/s)", kvOps.toFixed(0), etcdOps.toFixed(0)]);
  await kvDocs.close();

  const kvSessions = await KvSessionStore.open(`${dir.path}/session.kv`);
  const etcdSessions = new EtcdSessionStore(etcd);
  const kv = await sessionLatency(kvSessions);
  const et = await sessionLatency(etcdSessions);
  for (
    const [name, a, b] of [
      ["insert", kv.insert, et.insert],
      ["get", kv.get, et.get],
      ["update (new expiry)", kv.update, et.update],
    ] as const
  ) {
    rows.push([
      `session ${name} p50 / p99 (ms)`,
      `${percentile(a, 0.5).toFixed(2)} / ${percentile(a, 0.99).toFixed(2)}`,
      `${percentile(b, 0.5).toFixed(2)} / ${percentile(b, 0.99).toFixed(2)}`,
    ]);
  }
  rows.push(["session inserts/s, 64 in flight", kv.perSecond.toFixed(0), et.perSecond.toFixed(0)]);
  await kvSessions.close();

  const memoryLocks = new LockManager();
  const etcdLocks = await EtcdLockManager.open(etcd);
  const documentId = newId();
  const mem = await lockRoundTrips(
    () => memoryLocks.acquire("a", { documentId, ttlMs: 5000 }),
    (l) => Promise.resolve(memoryLocks.release("a", l.documentId, l.id)),
  );
  const dist = await lockRoundTrips(
    () => etcdLocks.acquire("a", { documentId, ttlMs: 5000 }),
    (l) => etcdLocks.release("a", l.documentId, l.id),
  );
  rows.push([
    "lock acquire+release p50 / p99 (ms)",
    `${percentile(mem, 0.5).toFixed(3)} / ${percentile(mem, 0.99).toFixed(3)} (memory)`,
    `${percentile(dist, 0.5).toFixed(2)} / ${percentile(dist, 0.99).toFixed(2)}`,
  ]);
  memoryLocks.close();
  await etcdLocks.close();
  etcd.close();

  console.log("| measure | Deno KV (embedded) | etcd (loopback) |");
  console.log("|---|---|---|");
  for (const row of rows) console.log(`| ${row.join(" | ")} |`);
}
