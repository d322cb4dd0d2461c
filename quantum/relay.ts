/**
 * A real-socket UDP impairment relay: clients send to the relay, the relay forwards to the
 * target through one upstream socket per client (like a NAT) and applies seeded impairments
 * in each direction. `rebind()` moves every client to a fresh upstream port, so the server
 * sees its peers change address mid-connection (migration).
 *
 * CLI: `deno task relay --listen 9001 --target 127.0.0.1:9000 --loss 0.05 --delay 5`
 * (send SIGHUP, or type `rebind` on stdin, to rebind).
 *
 * @example
 * ```ts
 * const relay = startRelay({ target: { hostname: "127.0.0.1", port: 9000 }, impairments: { loss: 0.05 } });
 * const conn = await dial({ hostname: "127.0.0.1", port: relay.addr.port });
 * relay.rebind();
 * await relay.close();
 * ```
 * @module
 */
import { PreciseTimer } from "./_precise_timer.ts";
import { setReceiveBuffer } from "./_sockopt.ts";
import { Impairer, type Impairments, type ImpairmentStats } from "./impairments.ts";

/** Options for {@linkcode startRelay}. */
export interface RelayOptions {
  /** Where the relay listens (default 127.0.0.1, any port). */
  listen?: { hostname?: string; port?: number };
  /** Where it forwards to. */
  target: { hostname: string; port: number };
  /** Impairments applied in both directions (each direction has its own seeded impairer). */
  impairments?: Impairments;
  /** Override for the server → client direction. */
  downstreamImpairments?: Impairments;
  /**
   * `SO_RCVBUF` for the relay's sockets (bytes; needs `--allow-ffi`, see `_sockopt.ts`), so the
   * relay's own kernel queues do not drop bursts. Default: the kernel's default.
   */
  receiveBufferBytes?: number;
  /** Called after each datagram was processed (for tests and tools that count). */
  onDatagram?: (direction: "upstream" | "downstream") => void;
}

/** Relay counters. */
export interface RelayStats {
  /** Client → server. */
  upstream: ImpairmentStats;
  /** Server → client. */
  downstream: ImpairmentStats;
  /** Clients seen. */
  clients: number;
  /** Rebinds done. */
  rebinds: number;
  /** Datagrams waiting in the delay line or the send queues (0 when the relay is drained). */
  pending: number;
}

/** A running relay. */
export interface Relay extends AsyncDisposable {
  /** The address clients send to. */
  readonly addr: Deno.NetAddr;
  /** Move every client to a new upstream socket (new source port at the server). */
  rebind(): void;
  /** Change impairments in both directions. */
  setImpairments(impairments: Impairments): void;
  /** Counters. */
  stats(): RelayStats;
  /** Stop: close all sockets and cancel pending deliveries. */
  close(): Promise<void>;
}

interface Client {
  addr: Deno.NetAddr;
  upstream: Deno.DatagramConn;
  loop: Promise<void>;
}

/** Start a relay. */
export function startRelay(options: RelayOptions): Relay {
  const front = Deno.listenDatagram({
    hostname: options.listen?.hostname ?? "127.0.0.1",
    port: options.listen?.port ?? 0,
    transport: "udp",
  });
  const tune = (socket: Deno.DatagramConn) => {
    if (options.receiveBufferBytes !== undefined) {
      setReceiveBuffer((socket.addr as Deno.NetAddr).port, options.receiveBufferBytes);
    }
  };
  tune(front);
  const target: Deno.NetAddr = { transport: "udp", ...options.target };
  const baseSeed = options.impairments?.seed ?? 1;
  const up = new Impairer({ ...options.impairments, seed: baseSeed });
  const down = new Impairer({
    ...(options.downstreamImpairments ?? options.impairments),
    seed: (options.downstreamImpairments?.seed ?? baseSeed) + 1,
  });
  const clients = new Map<string, Client>();
  let closed = false;
  let rebinds = 0;

  // Datagrams waiting for their delivery time, sorted by it (ties in arrival order). One timer
  // for the head: a timer per datagram fires out of order when delays are fractional, which
  // reorders a path that should not reorder (only jitter may). A precise timer: with Deno's
  // 1 ms `setTimeout` (never sooner than ~2 ms) datagrams arrived 1–2 ms late, see
  // `_precise_timer.ts`.
  const line: Array<{ at: number; bytes: Uint8Array; send: (bytes: Uint8Array) => void }> = [];
  const lineTimer = new PreciseTimer(drain);
  let lineTimerAt = Infinity;

  function drain(): void {
    lineTimerAt = Infinity;
    if (closed) return;
    const now = performance.now();
    let due = 0;
    while (due < line.length && line[due]!.at <= now + 0.25) due++;
    for (const item of line.splice(0, due)) item.send(item.bytes);
    armLine();
  }

  function armLine(): void {
    const head = line[0];
    if (!head || head.at >= lineTimerAt) return;
    lineTimerAt = head.at;
    lineTimer.arm(head.at);
  }

  function forward(
    impairer: Impairer,
    data: Uint8Array,
    send: (bytes: Uint8Array) => void,
  ): void {
    const now = performance.now();
    for (const { delayMs, data: copy } of impairer.process(data, now)) {
      if (delayMs < 0.5 && line.length === 0) {
        send(copy);
        continue;
      }
      const at = now + delayMs;
      let i = line.length;
      while (i > 0 && line[i - 1]!.at > at) i--;
      line.splice(i, 0, { at, bytes: copy, send });
      armLine();
    }
  }

  // One send op per socket at a time, in order (concurrent async sends can overtake each other).
  const sendQueues = new WeakMap<Deno.DatagramConn, Array<[Uint8Array, Deno.NetAddr]>>();
  let pendingSends = 0;

  function safeSend(socket: Deno.DatagramConn, bytes: Uint8Array, to: Deno.NetAddr): void {
    pendingSends++;
    const queue = sendQueues.get(socket);
    if (queue) {
      queue.push([bytes, to]);
      return;
    }
    const fresh: Array<[Uint8Array, Deno.NetAddr]> = [[bytes, to]];
    sendQueues.set(socket, fresh);
    (async () => {
      while (fresh.length > 0 && !closed) {
        const [b, addr] = fresh.shift()!;
        try {
          await socket.send(b, addr);
        } catch {
          // socket closed or ICMP error: a lost datagram
        }
        pendingSends--;
      }
      pendingSends -= fresh.length; // dropped at close
      sendQueues.delete(socket);
    })();
  }

  function openUpstream(client: { addr: Deno.NetAddr }): Client {
    const upstream = Deno.listenDatagram({ hostname: "0.0.0.0", port: 0, transport: "udp" });
    tune(upstream);
    const entry: Client = { addr: client.addr, upstream, loop: Promise.resolve() };
    entry.loop = (async () => {
      const buffer = new Uint8Array(65536);
      while (true) {
        let data: Uint8Array;
        try {
          [data] = await upstream.receive(buffer);
        } catch (error) {
          if (error instanceof Deno.errors.ConnectionRefused) continue;
          return; // closed
        }
        forward(down, data, (bytes) => safeSend(front, bytes, entry.addr));
        options.onDatagram?.("downstream");
      }
    })();
    return entry;
  }

  const frontLoop = (async () => {
    const buffer = new Uint8Array(65536);
    while (true) {
      let data: Uint8Array;
      let from: Deno.NetAddr;
      try {
        const [d, a] = await front.receive(buffer);
        data = d;
        from = a as Deno.NetAddr;
      } catch (error) {
        if (error instanceof Deno.errors.ConnectionRefused) continue;
        return;
      }
      const key = `${from.hostname}:${from.port}`;
      let client = clients.get(key);
      if (!client) {
        client = openUpstream({ addr: { ...from } });
        clients.set(key, client);
      }
      forward(up, data, (bytes) => {
        const current = clients.get(key);
        if (current) safeSend(current.upstream, bytes, target);
      });
      options.onDatagram?.("upstream");
    }
  })();

  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    lineTimer.close();
    line.length = 0;
    front.close();
    for (const client of clients.values()) client.upstream.close();
    await frontLoop;
    await Promise.all([...clients.values()].map((c) => c.loop));
  }

  return {
    get addr() {
      return front.addr as Deno.NetAddr;
    },
    rebind() {
      if (closed) return;
      rebinds++;
      for (const [key, client] of clients) {
        const old = client.upstream;
        const fresh = openUpstream(client);
        clients.set(key, fresh);
        old.close();
      }
    },
    setImpairments(impairments) {
      up.update(impairments);
      down.update(impairments);
    },
    stats() {
      return {
        upstream: { ...up.stats },
        downstream: { ...down.stats },
        clients: clients.size,
        rebinds,
        pending: line.length + pendingSends,
      };
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

function parseArgs(args: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith("--")) throw new TypeError(`Unexpected argument ${arg}`);
    out.set(arg.slice(2), args[++i] ?? "");
  }
  return out;
}

function parseHostPort(value: string): { hostname: string; port: number } {
  const index = value.lastIndexOf(":");
  const port = Number(value.slice(index + 1));
  if (index < 0 || !Number.isInteger(port)) throw new TypeError(`Expected host:port, got ${value}`);
  return { hostname: value.slice(0, index) || "127.0.0.1", port };
}

async function main(args: string[]): Promise<void> {
  const usage =
    "usage: relay --listen [host:]port --target host:port [--loss p] [--delay ms] [--jitter ms]\n" +
    "             [--duplicate p] [--corrupt p] [--bandwidth bytes/s] [--seed n]";
  let flags: Map<string, string>;
  try {
    flags = parseArgs(args);
    if (!flags.has("target") || !flags.has("listen")) {
      throw new TypeError("Missing --listen or --target");
    }
  } catch (error) {
    console.error(`${(error as Error).message}\n${usage}`);
    Deno.exit(2);
  }
  const listenArg = flags.get("listen")!;
  const listenAddr = listenArg.includes(":")
    ? parseHostPort(listenArg)
    : { hostname: "0.0.0.0", port: Number(listenArg) };
  const num = (name: string) => (flags.has(name) ? Number(flags.get(name)) : undefined);
  const impairments: Impairments = {};
  const set = (key: keyof Impairments, name: string) => {
    const v = num(name);
    if (v !== undefined) impairments[key] = v;
  };
  set("loss", "loss");
  set("delayMs", "delay");
  set("jitterMs", "jitter");
  set("duplicate", "duplicate");
  set("corrupt", "corrupt");
  set("bandwidthBytesPerSec", "bandwidth");
  set("seed", "seed");
  const relay = startRelay({
    listen: listenAddr,
    target: parseHostPort(flags.get("target")!),
    impairments,
  });
  console.error(
    `relay ${relay.addr.hostname}:${relay.addr.port} -> ${flags.get("target")} ${
      JSON.stringify(impairments)
    } (SIGHUP or "rebind" on stdin rebinds)`,
  );
  Deno.addSignalListener("SIGHUP", () => relay.rebind());
  const stop = () => {
    console.error(JSON.stringify(relay.stats()));
    relay.close().then(() => Deno.exit(0));
  };
  Deno.addSignalListener("SIGINT", stop);
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  for await (const chunk of lines) {
    if (chunk.includes("rebind")) {
      relay.rebind();
      console.error("rebound");
    }
    if (chunk.includes("stats")) console.error(JSON.stringify(relay.stats()));
  }
  await new Promise(() => {}); // stdin closed: keep relaying until SIGINT
}

if (import.meta.main) await main(Deno.args);
