/**
 * The physical-ceiling baseline for the end-to-end benchmark: a bare `Deno.serve`
 * WebSocket server that speaks the subset of the gateway protocol the benchmark uses
 * (auth, subscribe, op, ping) and rebroadcasts every op to the document's subscribers
 * with a per-document version counter — no auth check, no OT, no storage, no gRPC.
 *
 * With `sequencer` it is instead the front half of the architecture floor: ops go, batched
 * per event-loop turn, over one gRPC stream (TCP or Quantum) to floor_sequencer.ts, which
 * numbers them (and with `--durable` commits them to Deno KV); each reply is then rebroadcast
 * and acknowledged exactly as above. That is AetherFlow's topology with nothing of the product.
 *
 * Run alone: `deno run -A tests/bench/raw_ws_server.ts --port 9100 [--sequencer PORT
 * --transport tcp|quantum]` (prints "raw ws server listening on <port>").
 *
 * @example
 * ```ts
 * await using server = await startRawWsServer({ port: 0 });
 * new WebSocket(`ws://127.0.0.1:${server.port}/ws`);
 * ```
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { parseArgs } from "node:util";
import { connectGrpcOverQuantum } from "../../quantum/mod.ts";
import { SEQUENCER_SERVICE } from "./floor_sequencer.ts";

// deno-lint-ignore no-explicit-any
type Message = Record<string, any>;
interface Doc {
  version: number;
  subscribers: Set<WebSocket>;
}

/** Where the floor's ops are numbered: floor_sequencer.ts on 127.0.0.1. */
export interface SequencerTarget {
  port: number;
  transport: "tcp" | "quantum";
}

/** A running raw server. */
export interface RawWsServer extends AsyncDisposable {
  readonly port: number;
  /** Close every socket and stop listening. */
  close(): Promise<void>;
}

/** Start the raw rebroadcast server on 127.0.0.1. */
export async function startRawWsServer(
  options: { port: number; hostname?: string; sequencer?: SequencerTarget },
): Promise<RawWsServer> {
  const docs = new Map<string, Doc>();
  const sockets = new Set<WebSocket>();
  const sequencer = options.sequencer && await connectSequencer(options.sequencer, docs);
  const server = Deno.serve({
    port: options.port,
    hostname: options.hostname ?? "127.0.0.1",
    onListen: () => {},
  }, (req) => {
    if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("raw ws server", { status: 200 });
    }
    const { socket, response } = Deno.upgradeWebSocket(req);
    const mine = new Set<string>();
    sockets.add(socket);
    socket.onmessage = (event) => {
      const m = JSON.parse(event.data as string) as Message;
      switch (m.type) {
        case "auth":
          socket.send(JSON.stringify({ type: "reply", id: m.id, data: { user_id: "raw" } }));
          return;
        case "ping":
          socket.send(JSON.stringify({ type: "pong", id: m.id }));
          return;
        case "subscribe": {
          let doc = docs.get(m.document_id);
          if (doc === undefined) {
            doc = { version: 0, subscribers: new Set() };
            docs.set(m.document_id, doc);
          }
          doc.subscribers.add(socket);
          mine.add(m.document_id);
          socket.send(JSON.stringify({
            type: "reply",
            id: m.id,
            data: { document_id: m.document_id, version: doc.version },
          }));
          return;
        }
        case "op": {
          const doc = docs.get(m.document_id);
          if (doc === undefined) {
            socket.send(JSON.stringify({ type: "error", id: m.id, status: "NOT_FOUND" }));
            return;
          }
          if (sequencer === undefined) broadcast(doc, socket, m, ++doc.version);
          else sequencer.order(socket, m);
          return;
        }
      }
    };
    socket.onclose = () => {
      sockets.delete(socket);
      for (const id of mine) docs.get(id)?.subscribers.delete(socket);
    };
    return response;
  });
  const close = async () => {
    for (const socket of sockets) socket.close(1001);
    await server.shutdown();
    await sequencer?.close();
  };
  return { port: server.addr.port, close, [Symbol.asyncDispose]: close };
}

/** Send the op's event to every subscriber of its document and the ack to its sender. */
function broadcast(doc: Doc, sender: WebSocket, m: Message, version: number): void {
  doc.version = version;
  const text = JSON.stringify({
    type: "event",
    event: "operation_applied",
    document_id: m.document_id,
    version,
    operation: {
      version,
      base_version: m.base_version,
      client_op_id: m.client_op_id,
      components: m.components,
    },
  });
  for (const subscriber of doc.subscribers) {
    if (subscriber.readyState === WebSocket.OPEN) subscriber.send(text);
  }
  if (sender.readyState === WebSocket.OPEN) {
    sender.send(JSON.stringify({ type: "ack", id: m.id, document_id: m.document_id, version }));
  }
}

/**
 * One gRPC stream to the floor's sequencer. Ops of one event-loop turn go as one batch (as
 * the gateway's submit stream does); replies come back in order, so a FIFO finds each op's
 * sender.
 */
async function connectSequencer(target: SequencerTarget, docs: Map<string, Doc>) {
  const channel = target.transport === "quantum"
    ? await connectGrpcOverQuantum({ hostname: "127.0.0.1", port: target.port })
    : undefined;
  const Client = grpc.makeGenericClientConstructor(SEQUENCER_SERVICE, "Sequencer");
  const client = new Client(
    channel?.address ?? `127.0.0.1:${target.port}`,
    channel?.credentials ?? grpc.credentials.createInsecure(),
  ) as unknown as grpc.Client & { sequence(): grpc.ClientDuplexStream<Buffer, Buffer> };
  const stream = client.sequence();
  let closing = false;
  stream.on("error", (error) => {
    if (!closing) throw error;
  });
  const waiting: { socket: WebSocket; m: Message }[] = [];
  let batch: [string, string][] = [];
  stream.on("data", (reply: Buffer) => {
    const ordered = JSON.parse(reply.toString()) as [string, number, string][];
    for (const [documentId, version, op] of ordered) {
      const { socket, m } = waiting.shift()!;
      // The op as the back end returned it, decoded as the gateway decodes statesync's event.
      const { base_version, client_op_id, components } = JSON.parse(op);
      broadcast(docs.get(documentId)!, socket, {
        id: m.id,
        document_id: documentId,
        base_version,
        client_op_id,
        components,
      }, version);
    }
  });
  const flush = () => {
    stream.write(Buffer.from(JSON.stringify(batch)));
    batch = [];
  };
  return {
    order(socket: WebSocket, m: Message) {
      if (batch.length === 0) setImmediate(flush);
      waiting.push({ socket, m });
      const { base_version, client_op_id, components } = m;
      batch.push([m.document_id, JSON.stringify({ base_version, client_op_id, components })]);
    },
    async close() {
      closing = true;
      stream.end();
      client.close();
      await channel?.close();
    },
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      port: { type: "string", default: "9100" },
      sequencer: { type: "string" },
      transport: { type: "string", default: "tcp" },
    },
  });
  const server = await startRawWsServer({
    port: Number(values.port),
    ...(values.sequencer
      ? {
        sequencer: {
          port: Number(values.sequencer),
          transport: values.transport as SequencerTarget["transport"],
        },
      }
      : {}),
  });
  console.log(`raw ws server listening on ${server.port}`);
  Deno.addSignalListener("SIGTERM", () => void server.close().then(() => Deno.exit(0)));
}
