/**
 * The distributed mode end to end on a local cluster (`tests/cluster.ts`: real etcd,
 * 2 × session, 2 × statesync, 2 × gateway, all separate processes): WebSocket clients on
 * different gateways converge and see each other's presence, and a statesync instance
 * killed with SIGKILL under load loses no acknowledged operation.
 * @module
 */
import assert from "node:assert/strict";
import { ETCD_BINARY, needs } from "../kernel/testing.ts";
import { type Cluster, CLUSTER_USER, startCluster } from "./cluster.ts";

const tools = needs(ETCD_BINARY);

// deno-lint-ignore no-explicit-any
type Json = any;

/** POST/GET with the gateway's envelope `{code, message, data}`. */
async function api(base: string, path: string, init: RequestInit & { token?: string } = {}) {
  const headers = new Headers(init.headers);
  if (init.token) headers.set("authorization", `Bearer ${init.token}`);
  if (init.body) headers.set("content-type", "application/json");
  const response = await fetch(`${base}${path}`, { ...init, headers });
  const body = await response.json();
  if (!response.ok) throw new Error(`${path}: ${response.status} ${JSON.stringify(body)}`);
  return body.data as Json;
}

/** Sum of `aetherflow_statesync_operations_total` on one instance's /metrics. */
async function operationsApplied(url: string): Promise<number> {
  const text = await (await fetch(url)).text();
  let total = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("aetherflow_statesync_operations_total")) {
      total += Number(line.split(" ").at(-1));
    }
  }
  return total;
}

async function login(base: string): Promise<string> {
  const data = await api(base, "/api/v1/auth/login", {
    method: "POST",
    body: JSON.stringify(CLUSTER_USER),
  });
  return data.access_token as string;
}

/** A minimal client of the gateway's WebSocket protocol (gateway/PROTOCOL.md). */
class WsClient {
  #socket: WebSocket;
  #nextId = 1;
  #pending = new Map<number, { resolve: (m: Json) => void; reject: (e: Error) => void }>();
  #waiters: { predicate: () => boolean; resolve: () => void }[] = [];
  readonly events: Json[] = [];
  closed: Promise<void>;

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    this.closed = new Promise((resolve) => socket.addEventListener("close", () => resolve()));
    socket.addEventListener("message", (message) => {
      const frame = JSON.parse(String(message.data));
      if (frame.type === "ping") this.#socket.send(JSON.stringify({ type: "pong" }));
      if (frame.type === "event") this.events.push(frame);
      const pending = frame.id == null ? undefined : this.#pending.get(frame.id);
      if (pending !== undefined) {
        this.#pending.delete(frame.id);
        if (frame.type === "error") {
          pending.reject(Object.assign(new Error(frame.message), { status: frame.status }));
        } else pending.resolve(frame);
      }
      for (const waiter of [...this.#waiters]) {
        if (!waiter.predicate()) continue;
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    });
  }

  static async open(base: string, token: string): Promise<WsClient> {
    const socket = new WebSocket(`${base.replace("http", "ws")}/ws`);
    await new Promise((resolve, reject) => {
      socket.addEventListener("open", resolve, { once: true });
      socket.addEventListener("error", reject, { once: true });
    });
    const client = new WsClient(socket);
    await client.request({ type: "auth", token });
    return client;
  }

  request(message: Record<string, unknown>): Promise<Json> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#socket.send(JSON.stringify({ ...message, id }));
    });
  }

  /** Resolves once `predicate` holds (checked on every incoming frame). */
  until(predicate: () => boolean): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ predicate, resolve }));
  }

  /** Versions of the operation_applied events received, in arrival order. */
  opVersions(documentId: string): number[] {
    return this.events
      .filter((e) => e.event === "operation_applied" && e.document_id === documentId)
      .map((e) => e.version as number);
  }

  async close(): Promise<void> {
    this.#socket.close();
    await this.closed;
  }
}

/** Send `count` text inserts one after another, each based on the latest version seen. */
async function write(
  client: WsClient,
  documentId: string,
  tag: string,
  count: number,
  onAck?: () => void,
) {
  const acked: { clientOpId: string; version: number }[] = [];
  for (let i = 0; i < count; i++) {
    const clientOpId = `${tag}-${i}`;
    const versions = client.opVersions(documentId);
    const base = Math.max(0, ...versions, ...acked.map((a) => a.version));
    // Resend the same op (same client_op_id) while the cluster is failing over.
    for (let attempt = 0;; attempt++) {
      try {
        const ack = await client.request({
          type: "op",
          document_id: documentId,
          base_version: base,
          client_op_id: clientOpId,
          components: [{ type: "text_insert", path: ["text"], offset: 0, text: tag }],
        });
        acked.push({ clientOpId, version: ack.version });
        onAck?.();
        break;
      } catch (error) {
        const status = (error as { status?: string }).status;
        if (attempt >= 100 || !["UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED"].includes(status!)) {
          throw error;
        }
        await new Promise((resolve) => setTimeout(resolve, 50)); // client backoff, not a test wait
      }
    }
  }
  return acked;
}

/** One cluster for the file (starting six processes is slow): the failover test runs last. */
let shared: Promise<Cluster> | undefined;
async function withCluster(fn: (cluster: Cluster) => Promise<void>) {
  shared ??= startCluster();
  await fn(await shared);
}

Deno.test({
  name: "cluster: WebSocket clients on two gateways converge and see each other's presence" +
    tools.note,
  ignore: tools.ignore,
  sanitizeResources: false, // fetch keeps pooled connections to the gateways
  async fn() {
    await withCluster(async (cluster) => {
      const [g0, g1] = cluster.gateways as [string, string];
      const tokens = [await login(g0), await login(g1)];
      const doc = await api(g0, "/api/v1/documents", {
        method: "POST",
        token: tokens[0],
        body: JSON.stringify({ name: "shared", type: "json", content: { text: "" } }),
      });
      const a = await WsClient.open(g0, tokens[0]!);
      const b = await WsClient.open(g1, tokens[1]!);
      try {
        await a.request({ type: "subscribe", document_id: doc.id });
        await b.request({ type: "subscribe", document_id: doc.id });
        const perClient = 20;
        await Promise.all([write(a, doc.id, "a", perClient), write(b, doc.id, "b", perClient)]);
        const total = 2 * perClient;
        for (const client of [a, b]) {
          await client.until(() => client.opVersions(doc.id).length >= total);
          assert.deepEqual(
            client.opVersions(doc.id),
            Array.from({ length: total }, (_, i) => i + 1),
          );
        }
        const [d0, d1] = await Promise.all([
          api(g0, `/api/v1/documents/${doc.id}`, { token: tokens[0] }),
          api(g1, `/api/v1/documents/${doc.id}`, { token: tokens[1] }),
        ]);
        assert.equal(d0.version, total);
        assert.deepEqual(d0.content, d1.content);
        const text = d0.content.text as string;
        assert.equal(text.length, total);
        assert.equal(text.replaceAll("b", "").length, perClient);

        // Presence set through gateway 0 reaches the client on gateway 1.
        await a.request({ type: "presence", document_id: doc.id, state: { cursor: 7 } });
        const seen = () =>
          b.events.find((e) => e.event === "presence_updated" && e.presence?.state?.cursor === 7);
        await b.until(() => seen() !== undefined);
      } finally {
        await a.close();
        await b.close();
      }
    });
  },
});

Deno.test({
  name: "cluster: kill -9 of a statesync instance under load loses no acknowledged operation" +
    tools.note,
  ignore: tools.ignore,
  sanitizeResources: false,
  async fn() {
    await withCluster(async (cluster) => {
      const [g0, g1] = cluster.gateways as [string, string];
      const tokens = [await login(g0), await login(g1)];
      const doc = await api(g0, "/api/v1/documents", {
        method: "POST",
        token: tokens[0],
        body: JSON.stringify({ name: "failover", type: "json", content: { text: "" } }),
      });
      const clients = [await WsClient.open(g0, tokens[0]!), await WsClient.open(g1, tokens[1]!)];
      try {
        const perClient = 60;
        const counts = [0, 0];
        const tenEach = Promise.withResolvers<void>();
        const writing = clients.map((client, i) =>
          write(client, doc.id, "ab"[i]!, perClient, () => {
            counts[i]!++;
            if (counts.every((n) => n >= 10)) tenEach.resolve();
          })
        );
        // Once both clients have some acknowledged ops, kill the statesync instance that
        // applied the most of them (at least one gateway's stream is on it).
        await tenEach.promise;
        const applied = await Promise.all(cluster.statesyncMetrics.map(operationsApplied));
        const victim = applied[0]! >= applied[1]! ? 0 : 1;
        assert.ok(applied[victim]! > 0);
        await cluster.kill("statesync", victim);
        const ackedBefore = counts[0]! + counts[1]!;
        const acked = (await Promise.all(writing)).flat();
        assert.ok(acked.length > ackedBefore, "writes went on after the kill");
        const survivor = await operationsApplied(cluster.statesyncMetrics[1 - victim]!);
        assert.ok(survivor > applied[1 - victim]!, "the other instance took over");
        // Every acknowledged op is in the document exactly once.
        const final = await api(g1, `/api/v1/documents/${doc.id}`, { token: tokens[1] });
        const versions = new Set(acked.map((a) => a.version));
        assert.equal(versions.size, 2 * perClient, "each op acknowledged with its own version");
        assert.equal(final.version, 2 * perClient);
        assert.equal((final.content.text as string).length, 2 * perClient);
      } finally {
        for (const client of clients) await client.close();
      }
    });
  },
});

// Runs last (tests in a file run in order): stop the shared cluster.
Deno.test({
  name: "cluster: stop the shared cluster" + tools.note,
  ignore: tools.ignore,
  async fn() {
    await (await shared)?.stop();
  },
});
