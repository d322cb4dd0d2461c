/**
 * The physical-ceiling baseline for the end-to-end benchmark: a bare `Deno.serve`
 * WebSocket server that speaks the subset of the gateway protocol the benchmark uses
 * (auth, subscribe, op, ping) and rebroadcasts every op to the document's subscribers
 * with a per-document version counter — no auth check, no OT, no storage, no gRPC.
 * Run alone: `deno run -A tests/bench/raw_ws_server.ts --port 9100` (prints
 * "raw ws server listening on <port>").
 *
 * @example
 * ```ts
 * await using server = startRawWsServer({ port: 0 });
 * new WebSocket(`ws://127.0.0.1:${server.port}/ws`);
 * ```
 * @module
 */
import { parseArgs } from "node:util";

/** A running raw server. */
export interface RawWsServer extends AsyncDisposable {
  readonly port: number;
  /** Close every socket and stop listening. */
  close(): Promise<void>;
}

/** Start the raw rebroadcast server on 127.0.0.1. */
export function startRawWsServer(options: { port: number; hostname?: string }): RawWsServer {
  const docs = new Map<string, { version: number; subscribers: Set<WebSocket> }>();
  const sockets = new Set<WebSocket>();
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
      // deno-lint-ignore no-explicit-any
      const m = JSON.parse(event.data as string) as Record<string, any>;
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
          const version = ++doc.version;
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
          socket.send(
            JSON.stringify({ type: "ack", id: m.id, document_id: m.document_id, version }),
          );
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
  };
  return { port: server.addr.port, close, [Symbol.asyncDispose]: close };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { port: { type: "string", default: "9100" } },
  });
  const server = startRawWsServer({ port: Number(values.port) });
  console.log(`raw ws server listening on ${server.port}`);
  Deno.addSignalListener("SIGTERM", () => void server.close().then(() => Deno.exit(0)));
}
