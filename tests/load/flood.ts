/**
 * An abusive WebSocket client for resilience tests, run as its own process so its sending
 * loop does not share an event loop with the clients being measured:
 * `deno run -A tests/load/flood.ts --url ws://127.0.0.1:8080/ws --token T --document ID
 * --ms 3000 [--rate 0] [--stale]`. Authenticates, then sends text-insert ops as fast as the socket
 * takes them (`--rate 0`, bounded by a 1 MiB client send buffer) or at `--rate` messages/s,
 * based on the latest acked version (or on version 0 with `--stale`, so every op must be
 * transformed against the whole history);
 * reconnects whenever the gateway closes it. Prints `flooding` once authenticated, then one JSON line: `{ sent, rateLimited,
 * acks, connections, closes: { code: count } }`.
 * @module
 */
import { parseArgs } from "node:util";
import { LoadWsClient } from "./ws_client.ts";

/** What the flood observed. */
export interface FloodResult {
  sent: number;
  /** RESOURCE_EXHAUSTED errors received. */
  rateLimited: number;
  acks: number;
  connections: number;
  closes: Record<string, number>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Flood `url` for `ms` milliseconds. */
export async function flood(
  options: {
    url: string;
    token: string;
    documentId: string;
    ms: number;
    rate: number;
    stale?: boolean;
  },
  onStart: () => void = () => {},
): Promise<FloodResult> {
  const result: FloodResult = { sent: 0, rateLimited: 0, acks: 0, connections: 0, closes: {} };
  const deadline = performance.now() + options.ms;
  /** Latest acked version: ops are based on it unless `stale` (then on version 0). */
  let version = 0;
  while (performance.now() < deadline) {
    const c = await LoadWsClient.connect(options.url);
    result.connections++;
    c.onUnmatchedError = (m) => {
      if (m.status === "RESOURCE_EXHAUSTED") result.rateLimited++;
    };
    const auth = await c.request({ type: "auth", token: options.token });
    if (auth.type !== "reply") throw new Error(`auth failed: ${JSON.stringify(auth)}`);
    if (result.connections === 1) onStart();
    c.socket.addEventListener("message", (event) => {
      if (typeof event.data === "string" && event.data.startsWith('{"type":"ack"')) {
        result.acks++;
        version = Math.max(version, JSON.parse(event.data).version);
      }
    });
    const started = performance.now();
    let n = 0;
    while (c.open && performance.now() < deadline) {
      const due = options.rate > 0
        ? Math.floor(((performance.now() - started) * options.rate) / 1000)
        : n + 200;
      while (n < due && c.open && c.socket.bufferedAmount < 1_048_576) {
        c.send({
          type: "op",
          id: `f${n}`,
          document_id: options.documentId,
          base_version: options.stale ? 0 : version,
          components: [{ type: "text_insert", path: ["text"], offset: 0, text: "!" }],
        });
        n++;
        result.sent++;
      }
      await sleep(options.rate > 0 ? 1 : 0);
    }
    const event = c.open ? await c.close() : await c.closed;
    result.closes[event.code] = (result.closes[event.code] ?? 0) + 1;
  }
  return result;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      url: { type: "string" },
      token: { type: "string" },
      document: { type: "string" },
      ms: { type: "string", default: "3000" },
      rate: { type: "string", default: "0" },
      stale: { type: "boolean", default: false },
    },
  });
  if (!values.url || !values.token || !values.document) {
    console.error("usage: flood.ts --url WS_URL --token JWT --document ID [--ms 3000] [--rate 0]");
    Deno.exit(2);
  }
  const result = await flood({
    url: values.url,
    token: values.token,
    documentId: values.document,
    ms: Number(values.ms),
    rate: Number(values.rate),
    stale: values.stale,
  }, () => console.log("flooding"));
  console.log(JSON.stringify(result));
}
