/**
 * The end-to-end benchmark's architecture floor, back half: a process that orders document
 * ops behind one gRPC stream, as statesync does for the gateway, with none of statesync's work
 * (no auth, OT, limits, metrics). The front half is raw_ws_server.ts started with
 * `--sequencer`. Together they are the cheapest version of AetherFlow's topology — WebSocket
 * server → gRPC (TCP or Quantum) → ordering process → back — so the end-to-end benchmark can
 * show what the topology itself costs on this machine, apart from what the product adds.
 *
 * Wire format: one gRPC bidi stream; each request is a JSON batch `[[documentId, opJson], …]`,
 * each reply the same batch with versions: `[[documentId, version, opJson], …]`, in order.
 * With `--durable DIR` every reply waits for one Deno KV commit of its batch (one row of ops
 * per document and batch, plus the document's version row, like statesync's group commit);
 * batches that arrive during a commit share the next one.
 *
 * Run: `deno run -A --unstable-kv tests/bench/floor_sequencer.ts --transport tcp|quantum
 * [--durable DIR]`; prints `{"port":N}` once it listens, runs until killed.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { parseArgs } from "node:util";
import { listen } from "../../quantum/mod.ts";
import { bytesStreamService, serveOnLoopback } from "./_grpc_bytes.ts";

/** The one method: a bidi stream of op batches in, versioned batches out. */
export const SEQUENCER_SERVICE = bytesStreamService("sequence", "/bench.Sequencer/Sequence");

type Reply = [documentId: string, version: number, op: string][];

/** Commits replies' batches to Deno KV one commit at a time; calls `done` after each. */
function durableWriter(kv: Deno.Kv) {
  let queued: { reply: Reply; done: () => void }[] = [];
  let committing = false;
  const commitQueued = async () => {
    committing = true;
    while (queued.length > 0) {
      const batch = queued;
      queued = [];
      const rows = new Map<string, { first: number; last: number; ops: string[] }>();
      for (const { reply } of batch) {
        for (const [documentId, version, op] of reply) {
          const row = rows.get(documentId);
          if (row === undefined) rows.set(documentId, { first: version, last: version, ops: [op] });
          else {
            row.last = version;
            row.ops.push(op);
          }
        }
      }
      const atomic = kv.atomic();
      for (const [documentId, row] of rows) {
        atomic.set(["op", documentId, row.first], row.ops);
        atomic.set(["ver", documentId], row.last);
      }
      await atomic.commit();
      for (const { done } of batch) done();
    }
    committing = false;
  };
  return (reply: Reply, done: () => void) => {
    queued.push({ reply, done });
    if (!committing) void commitQueued();
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { transport: { type: "string", default: "tcp" }, durable: { type: "string" } },
  });
  const versions = new Map<string, number>();
  const kv = values.durable ? await Deno.openKv(`${values.durable}/floor.kv`) : undefined;
  const persist = kv ? durableWriter(kv) : undefined;
  const server = new grpc.Server();
  server.addService(SEQUENCER_SERVICE, {
    sequence: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on("data", (message: Buffer) => {
        const batch = JSON.parse(message.toString()) as [string, string][];
        const reply: Reply = batch.map(([documentId, op]) => {
          const version = (versions.get(documentId) ?? 0) + 1;
          versions.set(documentId, version);
          return [documentId, version, op];
        });
        const send = () => call.write(Buffer.from(JSON.stringify(reply)));
        if (persist) persist(reply, send);
        else send();
      });
      call.on("end", () => call.end());
    },
  });
  const port = await serveOnLoopback(
    server,
    values.transport === "quantum" ? listen({ hostname: "127.0.0.1", port: 0 }) : undefined,
  );
  console.log(JSON.stringify({ port }));
}

if (import.meta.main) await main();
