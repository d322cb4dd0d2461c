/**
 * `deno task bench:quantum`: Quantum (FEC off, adaptive FEC, fixed 10+3 FEC) against Deno's
 * built-in QUIC (default and "low-latency" = BBR congestion control) and plain TCP.
 *
 * Workloads, per cell:
 * - bulk: 16 MiB one way (client → server), goodput in MB/s measured at the receiver, capped at
 *   `--bulk-seconds` (a capped cell reports what arrived, marked `*`);
 * - messages: 200-byte request/response at 500/s for `--msg-seconds`, round trip p50/p99/max,
 *   and CPU (client + server) per round trip.
 *
 * Paths: direct on loopback, and through the impairment relay (`quantum/relay.ts`, its own
 * process, rate-capped at 50 Mbit/s with a 1 MiB queue) at loss 0/1/5% with one-way
 * delay 0 and 10 ms. TCP cannot pass the UDP relay (netem is unavailable), so it has the direct
 * row only. The server and the relay run in separate processes; the client runs here. Kernel
 * drops (`/proc/net/udp`) on every socket of the three processes are reported per cell; a cell
 * with drops is marked `!` (not a valid comparison). CPU = user + system seconds of client and
 * server per MiB moved.
 *
 * Every UDP socket (Quantum, QUIC endpoints, relay) gets a 4 MiB `SO_RCVBUF` through
 * `quantum/_sockopt.ts` (QUIC's endpoints are created here so their ports are known).
 *
 * Then: heap per idle Quantum connection, and 1,000 idle connections on one listener.
 *
 * Options: `--bulk-seconds 3 --msg-seconds 1.5 --only quantum,quic --paths direct,1%/10ms`
 * `--workloads bulk,msg --no-idle --json out.json`. The QUIC certificate is generated at start with `openssl` (self-signed,
 * not a CA, SAN localhost/127.0.0.1) into a temp dir.
 * @module
 */
import process from "node:process";
import { readLines } from "../../kernel/testing.ts";
import {
  dial,
  type FecOptions,
  listen,
  type QuantumConnection,
  type Relay,
  setReceiveBuffer,
  startRelay,
} from "../../quantum/mod.ts";

const ALPN = ["aetherflow-bench"];
const BULK_BYTES = 16 << 20;
const MSG_SIZE = 200;
const MSG_RATE = 500;
const RELAY_RATE = 50_000_000 / 8;
/**
 * The relay's queue in front of the 50 Mbit/s link: 1 MiB, about netem's default limit of 1,000
 * packets (168 ms at the cap). A shallower queue tail-drops BBR's STARTUP overshoot (the old
 * 256 KiB dropped up to 10k datagrams of QUIC-BBR's bulk run), which adds congestion loss to
 * the configured random loss and makes the lossy cells measure something else.
 */
const RELAY_QUEUE_BYTES = 1 << 20;
/** SO_RCVBUF for Quantum's sockets (REFERENCES.md: 4 MB removes kernel drops at 100k pkt/s). */
const RCVBUF = 4 << 20;
const encoder = new TextEncoder();

type Kind = "quantum" | "quantum-fec" | "quantum-fec13" | "quic" | "quic-bbr" | "tcp";
const KINDS: Kind[] = ["quantum", "quantum-fec", "quantum-fec13", "quic", "quic-bbr", "tcp"];
const LABEL: Record<Kind, string> = {
  "quantum": "Quantum",
  "quantum-fec": "Q+FEC adapt",
  "quantum-fec13": "Q+FEC 10+3",
  "quic": "QUIC default",
  "quic-bbr": "QUIC low-lat",
  "tcp": "TCP",
};

function fecFor(kind: Kind): false | FecOptions {
  if (kind === "quantum-fec") return { adaptive: true };
  if (kind === "quantum-fec13") return {};
  return false;
}

interface Path {
  name: string;
  loss: number;
  delayMs: number;
  relay: boolean;
}

const PATHS: Path[] = [
  { name: "direct", loss: 0, delayMs: 0, relay: false },
  ...[0, 10].flatMap((delayMs) =>
    [0, 0.01, 0.05].map((loss) => ({
      name: `${loss * 100}%/${delayMs}ms`,
      loss,
      delayMs,
      relay: true,
    }))
  ),
];

// ------------------------------------------------------------------ shared helpers

interface Duplex {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
}

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function arg(name: string, fallback: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && Deno.args[i + 1] !== undefined ? Deno.args[i + 1]! : fallback;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Reject after `ms` unless `promise` settles first; the timer never outlives the race. */
async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Kernel receive-buffer drops on every UDP socket of the given processes. */
async function udpDrops(pids: number[]): Promise<number> {
  const inodes = new Set<string>();
  for (const pid of pids) {
    try {
      for await (const entry of Deno.readDir(`/proc/${pid}/fd`)) {
        try {
          const link = await Deno.readLink(`/proc/${pid}/fd/${entry.name}`);
          const m = /^socket:\[(\d+)\]$/.exec(link);
          if (m) inodes.add(m[1]!);
        } catch { /* fd closed meanwhile */ }
      }
    } catch { /* process gone */ }
  }
  let drops = 0;
  for (const file of ["/proc/net/udp", "/proc/net/udp6"]) {
    let text = "";
    try {
      text = await Deno.readTextFile(file);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 13) continue;
      if (inodes.has(cols[9]!)) drops += Number(cols[12]);
    }
  }
  return drops;
}

// ------------------------------------------------------------------ server role

async function serveConnection(duplex: Duplex, state: BulkState): Promise<void> {
  const reader = duplex.readable.getReader();
  const writer = duplex.writable.getWriter();
  try {
    let first = await reader.read();
    while (!first.done && first.value.length === 0) first = await reader.read();
    if (first.done) return;
    let chunk = first.value;
    if (chunk[0] === 0x42 /* B */) {
      while (chunk.length < 9) {
        const more = await reader.read();
        if (more.done) return;
        const joined = new Uint8Array(chunk.length + more.value.length);
        joined.set(chunk);
        joined.set(more.value, chunk.length);
        chunk = joined;
      }
      const total = Number(new DataView(chunk.buffer, chunk.byteOffset).getBigUint64(1));
      state.bytes = chunk.length - 9;
      state.first = performance.now();
      state.last = state.first;
      while (state.bytes < total) {
        const r = await reader.read();
        if (r.done) return;
        state.bytes += r.value.length;
        state.last = performance.now();
      }
      await writer.write(new Uint8Array([0x44 /* D */]));
      await reader.read().catch(() => undefined); // until the client closes
    } else {
      // Messages: echo everything (200-byte frames stay framed on a byte stream).
      await writer.write(chunk.subarray(1));
      while (true) {
        const r = await reader.read();
        if (r.done) break;
        await writer.write(r.value);
      }
      await writer.close();
    }
  } catch {
    // The client aborts capped runs.
  } finally {
    reader.releaseLock();
    writer.releaseLock();
  }
}

interface BulkState {
  bytes: number;
  first: number;
  last: number;
}

async function serverRole(certFile: string, keyFile: string): Promise<void> {
  const state: BulkState = { bytes: 0, first: 0, last: 0 };
  const ports: Record<string, number> = {};
  const closers: Array<() => unknown> = [];
  for (const kind of ["quantum", "quantum-fec", "quantum-fec13"] as const) {
    const listener = listen({
      hostname: "127.0.0.1",
      port: 0,
      fec: fecFor(kind),
      receiveBufferBytes: RCVBUF,
    });
    ports[kind] = listener.addr.port;
    closers.push(() => listener.close());
    (async () => {
      for await (const conn of listener) {
        serveConnection(conn, state).finally(() => conn.close().catch(() => {}));
      }
    })();
  }
  const cert = Deno.readTextFileSync(certFile);
  const key = Deno.readTextFileSync(keyFile);
  for (const [kind, cc] of [["quic", "default"], ["quic-bbr", "low-latency"]] as const) {
    const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
    const listener = endpoint.listen({ cert, key, alpnProtocols: ALPN, congestionControl: cc });
    ports[kind] = endpoint.addr.port;
    setReceiveBuffer(endpoint.addr.port, RCVBUF);
    closers.push(() => endpoint.close());
    (async () => {
      try {
        for await (const incoming of listener) {
          (async () => {
            const conn = await incoming.accept();
            const reader = conn.incomingBidirectionalStreams.getReader();
            const stream = await reader.read();
            if (!stream.done) await serveConnection(stream.value, state);
            conn.closed.catch(() => {});
          })().catch(() => {});
        }
      } catch { /* endpoint closed */ }
    })();
  }
  const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  ports.tcp = tcp.addr.port;
  closers.push(() => tcp.close());
  (async () => {
    try {
      for await (const conn of tcp) {
        conn.setNoDelay(true);
        serveConnection(conn, state).finally(() => {
          try {
            conn.close();
          } catch { /* closed */ }
        });
      }
    } catch { /* closed */ }
  })();
  console.log(JSON.stringify({ ports, pid: Deno.pid }));
  for await (const line of readLines(Deno.stdin.readable)) {
    if (line === "cpu") console.log(JSON.stringify({ cpu: cpuSeconds() }));
    else if (line === "bulk") console.log(JSON.stringify({ ...state }));
  }
  for (const close of closers) await close();
  Deno.exit(0);
}

// ------------------------------------------------------------------ relay role

async function relayRole(loss: number, delayMs: number, targets: number[]): Promise<void> {
  const relays: Relay[] = targets.map((port, i) =>
    startRelay({
      target: { hostname: "127.0.0.1", port },
      impairments: {
        loss,
        delayMs,
        bandwidthBytesPerSec: RELAY_RATE,
        queueBytes: RELAY_QUEUE_BYTES,
        seed: 100 + i,
      },
      receiveBufferBytes: RCVBUF,
    })
  );
  console.log(JSON.stringify({ ports: relays.map((r) => r.addr.port), pid: Deno.pid }));
  for await (const line of readLines(Deno.stdin.readable)) {
    if (line === "stats") console.log(JSON.stringify(relays.map((r) => r.stats())));
  }
  for (const r of relays) await r.close();
  Deno.exit(0);
}

// ------------------------------------------------------------------ idle role

async function idleRole(): Promise<void> {
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  const conns: QuantumConnection[] = [];
  (async () => {
    for await (const conn of listener) conns.push(conn);
  })();
  console.log(JSON.stringify({ port: listener.addr.port, pid: Deno.pid }));
  for await (const line of readLines(Deno.stdin.readable)) {
    if (line === "mem") {
      (globalThis as { gc?: () => void }).gc?.();
      const m = Deno.memoryUsage();
      console.log(JSON.stringify({ heap: m.heapUsed, rss: m.rss, conns: conns.length }));
    }
  }
  await listener.close();
  Deno.exit(0);
}

// ------------------------------------------------------------------ children

class Child {
  readonly process: Deno.ChildProcess;
  readonly #lines: AsyncGenerator<string>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;

  constructor(args: string[], v8Flags: string[] = []) {
    const flags = v8Flags.length > 0 ? [`--v8-flags=${v8Flags.join(",")}`] : [];
    this.process = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ...flags, import.meta.filename!, ...args],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#lines = readLines(this.process.stdout);
    this.#writer = this.process.stdin.getWriter();
  }

  async next<T>(): Promise<T> {
    const r = await this.#lines.next();
    if (r.done) throw new Error("child exited");
    return JSON.parse(r.value) as T;
  }

  async request<T>(command: string): Promise<T> {
    await this.#writer.write(encoder.encode(command + "\n"));
    return this.next<T>();
  }

  async close(): Promise<void> {
    await this.#writer.close().catch(() => {});
    await this.process.status;
    for await (const _ of this.#lines) { /* drain */ }
  }
}

// ------------------------------------------------------------------ client workloads

interface Opened extends Duplex {
  close(): Promise<void>;
  abort(): void;
  quantum?: QuantumConnection;
}

async function open(kind: Kind, port: number, cert: string): Promise<Opened> {
  if (kind.startsWith("quantum")) {
    const conn = await dial({
      hostname: "127.0.0.1",
      port,
      fec: fecFor(kind),
      receiveBufferBytes: RCVBUF,
    });
    return {
      readable: conn.readable,
      writable: conn.writable,
      quantum: conn,
      close: () => conn.close(),
      abort: () => conn.abort("bench cap"),
    };
  }
  if (kind === "tcp") {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    const close = () => {
      try {
        conn.close();
      } catch { /* closed */ }
    };
    return {
      readable: conn.readable,
      writable: conn.writable,
      close: () => Promise.resolve(close()),
      abort: close,
    };
  }
  const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
  setReceiveBuffer(endpoint.addr.port, RCVBUF);
  const conn = await Deno.connectQuic({
    endpoint,
    hostname: "127.0.0.1",
    port,
    serverName: "localhost",
    alpnProtocols: ALPN,
    caCerts: [cert],
    congestionControl: kind === "quic-bbr" ? "low-latency" : "default",
  });
  const stream = await conn.createBidirectionalStream();
  const close = () => {
    try {
      conn.close({ closeCode: 0, reason: "done" });
    } catch { /* closed */ }
    try {
      endpoint.close();
    } catch { /* closed */ }
  };
  conn.closed.catch(() => {});
  return {
    readable: stream.readable,
    writable: stream.writable,
    close: () => Promise.resolve(close()),
    abort: close,
  };
}

interface BulkResult {
  mbps: number;
  capped: boolean;
  bytes: number;
  cpuPerMiB: number;
  fecOverhead?: number;
  retransmits?: number;
  fecRecovered?: number;
}

async function runBulk(
  kind: Kind,
  port: number,
  cert: string,
  server: Child,
  capSeconds: number,
): Promise<BulkResult> {
  const cpu0 = cpuSeconds();
  const serverCpu0 = (await server.request<{ cpu: number }>("cpu")).cpu;
  const conn = await open(kind, port, cert);
  const writer = conn.writable.getWriter();
  const reader = conn.readable.getReader();
  const deadline = performance.now() + capSeconds * 1000;
  const header = new Uint8Array(9);
  header[0] = 0x42;
  new DataView(header.buffer).setBigUint64(1, BigInt(BULK_BYTES));
  const chunk = new Uint8Array(64 * 1024).fill(7);
  const done = reader.read().then((r) => !r.done, () => false);
  let capped = false;
  const writing = (async () => {
    await writer.write(header);
    for (let sent = 0; sent < BULK_BYTES; sent += chunk.length) {
      if (performance.now() > deadline) return;
      await writer.write(chunk);
    }
  })().catch(() => {});
  const finished = await withTimeout(done, Math.max(0, deadline - performance.now()));
  if (finished === "timeout") capped = true;
  const state = await server.request<BulkState>("bulk");
  const stats = conn.quantum?.stats();
  if (capped) conn.abort();
  else await withTimeout(conn.close(), 2000);
  await withTimeout(writing, 1000);
  reader.releaseLock();
  writer.releaseLock();
  const serverCpu1 = (await server.request<{ cpu: number }>("cpu")).cpu;
  const seconds = Math.max(1e-3, (state.last - state.first) / 1000);
  const mib = Math.max(state.bytes, 1) / (1 << 20);
  const result: BulkResult = {
    mbps: state.bytes / seconds / 1e6,
    capped,
    bytes: state.bytes,
    cpuPerMiB: (cpuSeconds() - cpu0 + serverCpu1 - serverCpu0) / mib,
  };
  if (stats) {
    result.retransmits = stats.retransmits;
    // Parity against all data bytes sent (adaptive FEC protects only some packets).
    if (stats.fec && stats.fec.dataBytes > 0 && stats.bytesSent > 0) {
      result.fecOverhead = stats.fec.parityBytes / stats.bytesSent;
    }
  }
  return result;
}

interface MsgResult {
  p50: number;
  p99: number;
  max: number;
  lost: number;
  count: number;
  /** CPU (user + system) of client and server per round trip, µs. */
  cpuMicrosPerMsg: number;
  /** Quantum client: packets it retransmitted / packets its FEC rebuilt (responses). */
  retransmits?: number;
  fecRecovered?: number;
}

async function runMessages(
  kind: Kind,
  port: number,
  cert: string,
  server: Child,
  seconds: number,
): Promise<MsgResult> {
  const conn = await open(kind, port, cert);
  const cpu0 = cpuSeconds();
  const serverCpu0 = (await server.request<{ cpu: number }>("cpu")).cpu;
  const writer = conn.writable.getWriter();
  const reader = conn.readable.getReader();
  const total = Math.round(seconds * MSG_RATE);
  const sentAt = new Float64Array(total);
  const rtts: number[] = [];
  let all!: () => void;
  const allIn = new Promise<void>((resolve) => (all = resolve));
  const reading = (async () => {
    let pending = new Uint8Array(0);
    while (rtts.length < total) {
      const r = await reader.read();
      if (r.done) break;
      const now = performance.now();
      let buf = r.value;
      if (pending.length > 0) {
        const joined = new Uint8Array(pending.length + buf.length);
        joined.set(pending);
        joined.set(buf, pending.length);
        buf = joined;
      }
      let offset = 0;
      while (buf.length - offset >= MSG_SIZE) {
        const id = new DataView(buf.buffer, buf.byteOffset + offset).getUint32(0);
        rtts.push(now - sentAt[id]!);
        offset += MSG_SIZE;
      }
      pending = buf.slice(offset);
    }
    all();
  })().catch(() => all());
  await writer.write(new Uint8Array([0x4d /* M */]));
  const start = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) * MSG_RATE) / 1000) + 1);
    while (sent < due) {
      const frame = new Uint8Array(MSG_SIZE);
      new DataView(frame.buffer).setUint32(0, sent);
      sentAt[sent] = performance.now();
      writer.write(frame).catch(() => {});
      sent++;
    }
    await sleep(1);
  }
  await withTimeout(allIn, 2000);
  const cpu = cpuSeconds() - cpu0 + (await server.request<{ cpu: number }>("cpu")).cpu - serverCpu0;
  const stats = conn.quantum?.stats();
  conn.abort();
  await withTimeout(reading, 500);
  await withTimeout(conn.close(), 500);
  rtts.sort((a, b) => a - b);
  const q = (p: number) => rtts[Math.min(rtts.length - 1, Math.floor(p * rtts.length))] ?? NaN;
  return {
    p50: q(0.5),
    p99: q(0.99),
    max: rtts.at(-1) ?? NaN,
    lost: total - rtts.length,
    count: total,
    cpuMicrosPerMsg: (cpu * 1e6) / total,
    ...(stats ? { retransmits: stats.retransmits, fecRecovered: stats.fecRecovered } : {}),
  };
}

// ------------------------------------------------------------------ main

/** Waits (at most 3 s) until the relay holds no datagrams. */
async function relayDrained(relay: Child): Promise<void> {
  const deadline = performance.now() + 3000;
  while (performance.now() < deadline) {
    const stats = await relay.request<Array<{ pending: number }>>("stats");
    if (stats.every((s) => s.pending === 0)) return;
    await sleep(5);
  }
}

interface Cell {
  path: string;
  kind: Kind;
  bulk?: BulkResult;
  msg?: MsgResult;
  drops: number;
  relayQueueDrops?: number;
  error?: string;
}

async function makeCert(): Promise<
  { certFile: string; keyFile: string; cert: string; dir: string }
> {
  const dir = await Deno.makeTempDir({ prefix: "quantum-bench-" });
  const certFile = `${dir}/cert.pem`;
  const keyFile = `${dir}/key.pem`;
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      keyFile,
      "-out",
      certFile,
      "-days",
      "2",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
      "-addext",
      "basicConstraints=critical,CA:FALSE",
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`openssl failed: ${new TextDecoder().decode(out.stderr)}`);
  return { certFile, keyFile, cert: await Deno.readTextFile(certFile), dir };
}

function fmt(n: number | undefined, digits = 1): string {
  return n === undefined || Number.isNaN(n) ? "-" : n.toFixed(digits);
}

async function idleSection(count: number): Promise<string[]> {
  const server = new Child(["idle"], ["--expose-gc"]);
  const { port } = await server.next<{ port: number }>();
  const before = await server.request<{ heap: number; rss: number }>("mem");
  const clientHeap0 = Deno.memoryUsage().heapUsed;
  const conns: QuantumConnection[] = [];
  for (let i = 0; i < count; i += 100) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(100, count - i) }, () => dial({ hostname: "127.0.0.1", port })),
    );
    conns.push(...batch);
  }
  let after = await server.request<{ heap: number; rss: number; conns: number }>("mem");
  for (let i = 0; i < 50 && after.conns < count; i++) {
    await sleep(20);
    after = await server.request<{ heap: number; rss: number; conns: number }>("mem");
  }
  const clientHeap1 = Deno.memoryUsage().heapUsed;
  for (const c of conns) c.abort("bench done");
  await Promise.all(conns.map((c) => c.closed));
  await server.close();
  const perConn = (after.heap - before.heap) / after.conns;
  return [
    `| idle connections on one listener | ${after.conns} |`,
    `| listener heap before / after (MB) | ${fmt(before.heap / 1e6)} / ${fmt(after.heap / 1e6)} |`,
    `| listener RSS after (MB) | ${fmt(after.rss / 1e6)} |`,
    `| heap per idle connection, server side (KiB) | ${fmt(perConn / 1024, 2)} |`,
    `| heap per idle connection, dialing side incl. its endpoint (KiB) | ${
      fmt((clientHeap1 - clientHeap0) / count / 1024, 2)
    } |`,
  ];
}

async function main(): Promise<void> {
  const bulkSeconds = Number(arg("bulk-seconds", "3"));
  const msgSeconds = Number(arg("msg-seconds", "1.5"));
  const only = arg("only", "").split(",").filter(Boolean);
  const kinds = KINDS.filter((k) => only.length === 0 || only.some((o) => k.startsWith(o)));
  const pathFilter = arg("paths", "").split(",").filter(Boolean);
  const workloads = arg("workloads", "bulk,msg").split(",");
  const paths = PATHS.filter((p) => pathFilter.length === 0 || pathFilter.includes(p.name));
  const started = performance.now();
  const { certFile, keyFile, cert, dir } = await makeCert();
  const server = new Child(["server", certFile, keyFile]);
  const { ports, pid: serverPid } = await server.next<
    { ports: Record<Kind, number>; pid: number }
  >();
  const cells: Cell[] = [];
  for (const path of paths) {
    let relay: Child | null = null;
    let relayPid = 0;
    const relayKinds: Kind[] = kinds.filter((k) => k !== "tcp");
    let relayPorts: number[] = [];
    if (path.relay) {
      relay = new Child([
        "relay",
        String(path.loss),
        String(path.delayMs),
        relayKinds.map((k) => ports[k]).join(","),
      ]);
      const info = await relay.next<{ ports: number[]; pid: number }>();
      relayPorts = info.ports;
      relayPid = info.pid;
    }
    for (const kind of kinds) {
      if (path.relay && kind === "tcp") continue;
      const port = path.relay ? relayPorts[relayKinds.indexOf(kind)]! : ports[kind];
      const pids = [Deno.pid, serverPid, ...(relayPid ? [relayPid] : [])];
      const cell: Cell = { path: path.name, kind, drops: 0 };
      const relayBefore = relay
        ? (await relay.request<Array<{ upstream: { queueDrops: number } }>>("stats"))
        : null;
      const drops0 = await udpDrops(pids);
      try {
        if (workloads.includes("bulk")) {
          cell.bulk = await runBulk(kind, port, cert, server, bulkSeconds);
        }
        // A capped bulk run leaves up to a queue's worth of datagrams in the relay: let them
        // drain, or the first messages wait behind them.
        if (relay) await relayDrained(relay);
        if (workloads.includes("msg")) {
          cell.msg = await runMessages(kind, port, cert, server, msgSeconds);
        }
      } catch (error) {
        cell.error = String(error);
      }
      cell.drops = (await udpDrops(pids)) - drops0;
      if (relay && relayBefore) {
        const after = await relay.request<Array<{ upstream: { queueDrops: number } }>>("stats");
        const i = relayKinds.indexOf(kind);
        cell.relayQueueDrops = after[i]!.upstream.queueDrops - relayBefore[i]!.upstream.queueDrops;
      }
      cells.push(cell);
      console.error(
        `${path.name.padEnd(8)} ${LABEL[kind].padEnd(13)} bulk ${fmt(cell.bulk?.mbps, 2)} MB/s${
          cell.bulk?.capped ? "*" : ""
        } msg p50/p99/max ${fmt(cell.msg?.p50, 2)}/${fmt(cell.msg?.p99, 2)}/${
          fmt(cell.msg?.max, 2)
        } ms ${fmt(cell.msg?.cpuMicrosPerMsg, 0)} µs/msg lost ${
          cell.msg?.lost ?? "-"
        } drops ${cell.drops} relay q ${cell.relayQueueDrops ?? "-"} rtx ${
          cell.bulk?.retransmits ?? "-"
        } fec ${fmt((cell.bulk?.fecOverhead ?? NaN) * 100)}%${cell.error ? " " + cell.error : ""}`,
      );
    }
    await relay?.close();
  }
  await server.close();
  await Deno.remove(dir, { recursive: true });
  const idle = Deno.args.includes("--no-idle") ? [] : await idleSection(1000);
  const elapsed = (performance.now() - started) / 1000;

  const lines: string[] = [];
  const cpu = (await Deno.readTextFile("/proc/cpuinfo")).match(/model name\s*:\s*(.*)/)?.[1];
  lines.push(
    `Run ${new Date().toISOString()} on ${Deno.hostname()} (${
      cpu ?? "?"
    }, ${navigator.hardwareConcurrency} cores), Deno ${Deno.version.deno}; ${
      elapsed.toFixed(0)
    } s. Bulk: 16 MiB client → server, capped at ${bulkSeconds} s (\`*\` = capped: goodput of what arrived). Messages: ${MSG_SIZE} B request/response at ${MSG_RATE}/s for ${msgSeconds} s. Relay rate cap 50 Mbit/s, queue ${
      RELAY_QUEUE_BYTES >> 10
    } KiB; messages start once the relay is drained. \`!\` = kernel UDP drops on our sockets during the cell (invalid cell).`,
    "",
  );
  const header = `| path | ${kinds.map((k) => LABEL[k]).join(" | ")} |`;
  const rule = `|---|${kinds.map(() => "---").join("|")}|`;
  const cellOf = (path: string, kind: Kind) =>
    cells.find((c) => c.path === path && c.kind === kind);
  const mark = (c: Cell) => (c.drops > 0 ? ` !${c.drops}` : "");
  const table = (title: string, value: (c: Cell) => string) => {
    lines.push(`**${title}**`, "", header, rule);
    for (const p of paths) {
      lines.push(
        `| ${p.name} | ${
          kinds.map((k) => {
            const c = cellOf(p.name, k);
            if (!c) return "n/a";
            if (c.error) return "error";
            return value(c) + mark(c);
          }).join(" | ")
        } |`,
      );
    }
    lines.push("");
  };
  table("Bulk goodput (MB/s)", (c) => `${fmt(c.bulk?.mbps, 2)}${c.bulk?.capped ? "*" : ""}`);
  table(
    "Messages round trip p50 / p99 / max (ms), lost",
    (c) =>
      `${fmt(c.msg?.p50, 2)} / ${fmt(c.msg?.p99, 2)} / ${fmt(c.msg?.max, 1)}${
        c.msg?.lost ? ` (${c.msg.lost} lost)` : ""
      }`,
  );
  table("CPU seconds per MiB (bulk, client + server)", (c) => fmt(c.bulk?.cpuPerMiB, 3));
  table(
    "Messages: CPU µs per round trip (client + server); Quantum client retransmits / FEC-rebuilt",
    (c) =>
      `${fmt(c.msg?.cpuMicrosPerMsg, 0)}${
        c.msg?.retransmits === undefined ? "" : `; ${c.msg.retransmits} / ${c.msg.fecRecovered}`
      }`,
  );
  table(
    "Quantum bulk: FEC parity overhead (% of data bytes) / retransmits; relay queue drops",
    (c) =>
      c.kind.startsWith("quantum")
        ? `${c.bulk?.fecOverhead === undefined ? "-" : fmt(c.bulk.fecOverhead * 100, 1) + "%"} / ${
          c.bulk?.retransmits ?? "-"
        }${c.relayQueueDrops ? `; q${c.relayQueueDrops}` : ""}`
        : c.relayQueueDrops
        ? `q${c.relayQueueDrops}`
        : "-",
  );
  lines.push(
    "**Idle connections (Quantum, default options)**",
    "",
    "| | |",
    "|---|---|",
    ...idle,
    "",
  );
  console.log(lines.join("\n"));
  const json = arg("json", "");
  if (json) await Deno.writeTextFile(json, JSON.stringify({ cells, idle }, null, 2));
}

if (import.meta.main) {
  const role = Deno.args[0];
  if (role === "server") await serverRole(Deno.args[1]!, Deno.args[2]!);
  else if (role === "relay") {
    await relayRole(
      Number(Deno.args[1]),
      Number(Deno.args[2]),
      Deno.args[3]!.split(",").map(Number),
    );
  } else if (role === "idle") await idleRole();
  else await main();
}
