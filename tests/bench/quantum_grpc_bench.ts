/**
 * CPU per small gRPC message over Quantum vs plain TCP (issue 12's stack in miniature): one
 * bidirectional grpc-js stream, the client sends `--bytes`-byte messages at fixed rates and the
 * server (its own process) echoes each one back. Over Quantum the client goes through
 * `connectGrpcOverQuantum` and the server through `serveGrpcOverQuantum`, as gateway ↔
 * statesync do.
 *
 * Prints, per transport and rate: achieved rate, round-trip p50/p99, CPU µs per message for the
 * client process (generator + grpc-js client + Quantum) and the server process (grpc-js server +
 * Quantum), and over Quantum the datagrams per message seen by the client's UDP socket, split
 * into data packets and ACK-only packets, both directions.
 *
 * Run: `deno task bench:quantum-grpc` with
 *     [--rates 250,1000,4000] [--seconds 4] [--bytes 300] [--transports quantum,tcp]
 *     [--profile DIR]
 *
 * CPU comes from /proc/<pid>/stat (utime + stime, all threads; 10 ms ticks), so short steps at
 * low rates are coarse: at 250 msg/s for 4 s one tick is 10 µs per message.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { parseArgs } from "node:util";
import { connectGrpcOverQuantum, listen } from "../../quantum/mod.ts";
import { listenUdp, type PacketConn } from "../../quantum/packet_conn.ts";
import { decodePacket, FLAG, type Packet } from "../../quantum/wire.ts";
import { type Clock, realClock } from "../../quantum/clock.ts";
import { bytesStreamService, serveOnLoopback } from "./_grpc_bytes.ts";

const ECHO_SERVICE = bytesStreamService("echo", "/bench.Echo/Echo");
const RECEIVE_BUFFER_BYTES = 4 << 20;

type Transport = "quantum" | "tcp";

// ------------------------------------------------------------------ server process

async function runServer(transport: Transport): Promise<void> {
  const counts = newCounts();
  const server = new grpc.Server();
  server.addService(ECHO_SERVICE, {
    echo: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on("data", (message: Buffer) => call.write(message));
      call.on("end", () => call.end());
    },
  });
  const port = await serveOnLoopback(
    server,
    transport === "quantum"
      ? listen({
        packetConn: countingPacketConn(
          listenUdp({ hostname: "127.0.0.1", port: 0, receiveBufferBytes: RECEIVE_BUFFER_BYTES }),
          counts,
        ),
        clock: countingClock(counts),
      })
      : undefined,
  );
  console.log(JSON.stringify({ port }));
  // Each line on stdin asks for the counters; runs until the parent kills it.
  for await (const _ of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    console.log(JSON.stringify(counts));
  }
}

// ------------------------------------------------------------------ counters

/** Quantum activity seen by one side: datagrams by kind and timer/defer calls. */
interface Counts {
  dataOut: number;
  ackOut: number;
  /** Data datagrams with a sequence number sent before (retransmissions and probes). */
  resentOut: number;
  dataIn: number;
  ackIn: number;
  timersArmed: number;
  timersFired: number;
  defers: number;
}

function newCounts(): Counts {
  return {
    dataOut: 0,
    ackOut: 0,
    resentOut: 0,
    dataIn: 0,
    ackIn: 0,
    timersArmed: 0,
    timersFired: 0,
    defers: 0,
  };
}

/** The real clock, counting the timers Quantum arms and fires and the callbacks it defers. */
function countingClock(counts: Counts): Clock {
  return {
    now: realClock.now,
    setTimer(delayMs, callback) {
      counts.timersArmed++;
      return realClock.setTimer(delayMs, () => {
        counts.timersFired++;
        callback();
      });
    },
    defer(callback) {
      counts.defers++;
      realClock.defer!(callback);
    },
  };
}

/** True for a packet that carries no data and no FIN (a pure ACK, ping or window update). */
function isAckOnly(packet: Packet): boolean {
  return packet.payload.length === 0 && (packet.flags & (FLAG.FIN | FLAG.SYN)) === 0;
}

/** Wraps the client's UDP socket and counts data and ACK-only datagrams each way. */
function countingPacketConn(inner: PacketConn, counts: Counts): PacketConn {
  let highestSeqOut = 0;
  const countIn = (got: [Uint8Array, Deno.NetAddr] | null) => {
    if (!got) return got;
    const result = decodePacket(got[0]);
    if (result.ok) {
      if (isAckOnly(result.packet)) counts.ackIn++;
      else counts.dataIn++;
    }
    return got;
  };
  const countOut = (packet: Packet) => {
    if (isAckOnly(packet)) {
      counts.ackOut++;
      return;
    }
    counts.dataOut++;
    if (packet.seq <= highestSeqOut) counts.resentOut++;
    else highestSeqOut = packet.seq;
  };
  return {
    get addr() {
      return inner.addr;
    },
    receive: async (buffer) => countIn(await inner.receive(buffer)),
    ...(inner.tryReceive ? { tryReceive: () => countIn(inner.tryReceive!()) } : {}),
    send(data, addr) {
      const result = decodePacket(data);
      if (result.ok) countOut(result.packet);
      inner.send(data, addr);
    },
    ...(inner.sendPacket
      ? {
        sendPacket(packet: Packet, addr: Deno.NetAddr) {
          countOut(packet);
          inner.sendPacket!(packet, addr);
        },
      }
      : {}),
    close: () => inner.close(),
  };
}

// ------------------------------------------------------------------ client (bench process)

async function cpuTicks(pid: number | "self"): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime (fields 14, 15)
}

interface StepResult {
  transport: Transport;
  rate: number;
  achieved: number;
  p50: number;
  p99: number;
  clientUs: number;
  serverUs: number;
  /** Quantum counters of the client and the server during the step. */
  client?: Counts;
  server?: Counts;
  messages: number;
}

function difference(after: Counts, before: Counts): Counts {
  const out = newCounts();
  for (const key of Object.keys(out) as Array<keyof Counts>) out[key] = after[key] - before[key];
  return out;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function runTransport(
  transport: Transport,
  rates: number[],
  seconds: number,
  bytes: number,
  profileDir: string | undefined,
): Promise<StepResult[]> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", import.meta.filename!, "--server", transport],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
    // V8 tick profile of the server (`node --prof-process DIR/server-<transport>.v8.log`).
    ...(profileDir
      ? {
        env: {
          DENO_V8_FLAGS:
            `--prof,--prof-sampling-interval=200,--no-logfile-per-isolate,--logfile=${profileDir}/server-${transport}.v8.log`,
        },
      }
      : {}),
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const readLine = async () => {
    while (!text.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) throw new Error("server exited");
      text += value;
    }
    const line = text.slice(0, text.indexOf("\n"));
    text = text.slice(line.length + 1);
    return JSON.parse(line);
  };
  const { port } = await readLine() as { port: number };
  const requests = child.stdin.getWriter();
  const serverCounts = async () => {
    await requests.write(new TextEncoder().encode("\n"));
    return await readLine() as Counts;
  };

  const counts = newCounts();
  let channel: Awaited<ReturnType<typeof connectGrpcOverQuantum>> | undefined;
  let address = `127.0.0.1:${port}`;
  if (transport === "quantum") {
    channel = await connectGrpcOverQuantum({
      hostname: "127.0.0.1",
      port,
      packetConn: countingPacketConn(
        listenUdp({ hostname: "127.0.0.1", port: 0, receiveBufferBytes: RECEIVE_BUFFER_BYTES }),
        counts,
      ),
      clock: countingClock(counts),
    });
    address = channel.address;
  }
  const Client = grpc.makeGenericClientConstructor(ECHO_SERVICE, "Echo");
  const client = new Client(
    address,
    channel?.credentials ?? grpc.credentials.createInsecure(),
  ) as unknown as
    & grpc.Client
    & {
      echo(): grpc.ClientDuplexStream<Buffer, Buffer>;
    };
  const stream = client.echo();
  let finished = false;
  stream.on("error", (error) => {
    if (!finished) throw error;
  });
  const sentAt: number[] = [];
  let received = 0;
  let latencies: number[] = [];
  let onReceived: (() => void) | null = null;
  stream.on("data", () => {
    latencies.push(performance.now() - sentAt[received]!);
    received++;
    onReceived?.();
  });
  const payload = Buffer.alloc(bytes, 7);
  const send = () => {
    sentAt.push(performance.now());
    stream.write(payload);
  };
  const waitFor = (count: number) =>
    new Promise<void>((resolve, reject) => {
      const timeout = setTimeout(() => reject(new Error("echo timed out")), 10_000);
      const check = () => {
        if (received >= count) {
          clearTimeout(timeout);
          onReceived = null;
          resolve();
        }
      };
      onReceived = check;
      check();
    });

  // Warm up (connection, JIT, congestion window).
  for (let i = 0; i < 200; i++) send();
  await waitFor(sentAt.length);

  const results: StepResult[] = [];
  for (const rate of rates) {
    latencies = [];
    const before = { ...counts };
    const serverBefore = transport === "quantum" ? await serverCounts() : undefined;
    const firstIndex = sentAt.length;
    const clientBefore = await cpuTicks("self");
    const serverCpuBefore = await cpuTicks(child.pid);
    const start = performance.now();
    const target = Math.round(rate * seconds);
    // Fixed-rate generator on a 1 ms timer: each tick sends what is due by now.
    await new Promise<void>((resolve) => {
      const tick = () => {
        const due = Math.min(target, Math.floor(((performance.now() - start) / 1000) * rate));
        while (sentAt.length - firstIndex < due) send();
        if (sentAt.length - firstIndex >= target) resolve();
        else setTimeout(tick, 1);
      };
      tick();
    });
    await waitFor(sentAt.length);
    const elapsed = (performance.now() - start) / 1000;
    const clientTicks = (await cpuTicks("self")) - clientBefore;
    const serverTicks = (await cpuTicks(child.pid)) - serverCpuBefore;
    const serverAfter = serverBefore ? await serverCounts() : undefined;
    const sorted = latencies.sort((a, b) => a - b);
    const toUs = (ticks: number) => Math.round((ticks * 10_000) / target);
    console.error(`${transport} ${rate}/s done`);
    results.push({
      transport,
      rate,
      achieved: Math.round(target / elapsed),
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      clientUs: toUs(clientTicks),
      serverUs: toUs(serverTicks),
      messages: target,
      ...(serverBefore && serverAfter
        ? { client: difference(counts, before), server: difference(serverAfter, serverBefore) }
        : {}),
    });
  }
  finished = true;
  stream.end();
  client.close();
  await channel?.close();
  child.kill("SIGKILL");
  await child.status;
  await requests.close().catch(() => {});
  await lines.cancel().catch(() => {});
  return results;
}

function fmt(n: number, digits = 2): string {
  return n.toFixed(digits);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      server: { type: "string" },
      rates: { type: "string", default: "250,1000,4000" },
      seconds: { type: "string", default: "4" },
      bytes: { type: "string", default: "300" },
      transports: { type: "string", default: "quantum,tcp" },
      profile: { type: "string" },
    },
  });
  if (values.server) return runServer(values.server as Transport);
  const rates = values.rates.split(",").map(Number);
  const seconds = Number(values.seconds);
  const bytes = Number(values.bytes);
  const transports = values.transports.split(",") as Transport[];
  const rows: StepResult[] = [];
  for (const transport of transports) {
    rows.push(...await runTransport(transport, rates, seconds, bytes, values.profile));
  }

  console.log(
    `\n${bytes} B echo messages on one bidi stream, ${seconds} s per rate, ` +
      `${new Date().toISOString()}, load ${(await Deno.readTextFile("/proc/loadavg")).trim()}\n`,
  );
  console.log(
    "| transport | rate | achieved | rtt p50 / p99 ms | client µs/msg | server µs/msg |",
  );
  console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
  for (const r of rows) {
    console.log(
      `| ${r.transport} | ${r.rate} | ${r.achieved} | ${fmt(r.p50)} / ${fmt(r.p99)} | ` +
        `${r.clientUs} | ${r.serverUs} |`,
    );
  }
  console.log(
    "\nQuantum, per message: datagrams sent by each side (data + ACK-only; resent = data " +
      "retransmissions and probes), timers armed / fired, deferred callbacks\n",
  );
  console.log(
    "| rate | client data + ack (resent) | server data + ack (resent) | " +
      "client timers armed / fired | server timers armed / fired | client / server defers |",
  );
  console.log("| ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const r of rows) {
    const c = r.client;
    const s = r.server;
    if (!c || !s) continue;
    const per = (n: number) => fmt(n / r.messages);
    console.log(
      `| ${r.rate} | ${per(c.dataOut)} + ${per(c.ackOut)} (${per(c.resentOut)}) | ` +
        `${per(s.dataOut)} + ${per(s.ackOut)} (${per(s.resentOut)}) | ` +
        `${per(c.timersArmed)} / ${per(c.timersFired)} | ` +
        `${per(s.timersArmed)} / ${per(s.timersFired)} | ${per(c.defers)} / ${per(s.defers)} |`,
    );
  }
}

if (import.meta.main) await main();
