/**
 * `quantum`: send or receive a byte stream over Quantum from the command line.
 *
 * ```sh
 * deno task quantum listen --port 9000 > out        # receive one connection to stdout
 * deno task quantum send 192.0.2.10:9000 < in        # send stdin
 * ```
 *
 * Options: `--host` (listen address, default 0.0.0.0), `--congestion newreno|bbr`,
 * `--keep` (listen: keep accepting connections one after another). Progress and a stats
 * summary go to stderr.
 * @module
 */
import { createBbr } from "./bbr.ts";
import type { CongestionControllerFactory } from "./congestion.ts";
import type { QuantumConnection } from "./connection.ts";
import { dial, listen } from "./endpoint.ts";
import { newReno } from "./newreno.ts";

const USAGE = `usage:
  quantum listen [--port 9000] [--host 0.0.0.0] [--keep] [--congestion newreno|bbr] > out
  quantum send host:port [--congestion newreno|bbr] < in`;

function congestion(name: string | undefined): CongestionControllerFactory {
  if (name === undefined || name === "newreno") return (o) => newReno(o);
  if (name === "bbr") return (o) => createBbr(o);
  throw new TypeError(`Unknown congestion controller ${name}`);
}

function summary(conn: QuantumConnection, bytes: number, ms: number): string {
  const s = conn.stats();
  return `${bytes} bytes in ${(ms / 1000).toFixed(2)} s (${
    (bytes / 1048576 / (ms / 1000)).toFixed(2)
  } MiB/s); ` +
    `rtt ${s.rttMs.toFixed(2)} ms, ${s.packetsSent} packets sent, ${s.retransmits} retransmits, ` +
    `${s.duplicates} duplicates, drops ${JSON.stringify(s.drops)}`;
}

async function counting(
  source: ReadableStream<Uint8Array>,
  sink: WritableStream<Uint8Array>,
): Promise<number> {
  let bytes = 0;
  await source.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        bytes += chunk.length;
        controller.enqueue(chunk);
      },
    }),
  ).pipeTo(sink);
  return bytes;
}

/** `write` may write part of a chunk (pipes): loop until all of it is out. */
async function writeFully(
  target: { write(p: Uint8Array): Promise<number> },
  chunk: Uint8Array,
): Promise<void> {
  for (let offset = 0; offset < chunk.length;) offset += await target.write(chunk.subarray(offset));
}

async function runListen(flags: Map<string, string | true>): Promise<void> {
  const port = Number(flags.get("port") ?? 9000);
  const hostname = String(flags.get("host") ?? "0.0.0.0");
  const listener = listen({
    hostname,
    port,
    congestion: congestion(flags.get("congestion") as string),
  });
  console.error(`quantum listening on ${listener.addr.hostname}:${listener.addr.port}`);
  for await (const conn of listener) {
    const started = performance.now();
    console.error(`connection ${conn.id} from ${conn.remoteAddr.hostname}:${conn.remoteAddr.port}`);
    const bytes = await counting(
      conn.readable,
      new WritableStream({
        write: (chunk) => writeFully(Deno.stdout, chunk),
      }),
    );
    await conn.close();
    console.error(`received ${summary(conn, bytes, performance.now() - started)}`);
    if (!flags.has("keep")) break;
  }
  await listener.close();
}

async function runSend(target: string, flags: Map<string, string | true>): Promise<void> {
  const index = target.lastIndexOf(":");
  const port = Number(target.slice(index + 1));
  if (index < 1 || !Number.isInteger(port)) {
    throw new TypeError(`Expected host:port, got ${target}`);
  }
  const started = performance.now();
  const conn = await dial({
    hostname: target.slice(0, index),
    port,
    congestion: congestion(flags.get("congestion") as string),
  });
  const draining = conn.readable.pipeTo(new WritableStream()); // nothing expected back
  const bytes = await counting(Deno.stdin.readable, conn.writable);
  await draining;
  await conn.close();
  const info = await conn.closed;
  console.error(`sent ${summary(conn, bytes, performance.now() - started)}; close: ${info.reason}`);
  if (info.reason !== "closed") Deno.exit(1);
}

async function main(args: string[]): Promise<void> {
  const [command, ...rest] = args;
  const flags = new Map<string, string | true>();
  const positional: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (arg === "--keep") flags.set("keep", true);
    else if (arg.startsWith("--")) flags.set(arg.slice(2), rest[++i] ?? "");
    else positional.push(arg);
  }
  try {
    if (command === "listen") await runListen(flags);
    else if (command === "send" && positional[0]) await runSend(positional[0], flags);
    else {
      console.error(USAGE);
      Deno.exit(2);
    }
  } catch (error) {
    console.error(`quantum: ${(error as Error).message}`);
    Deno.exit(1);
  }
}

if (import.meta.main) await main(Deno.args);
