/**
 * Test harnesses shared by the Quantum test files: one connection suite runs over the
 * simulated network (virtual clock) and over real UDP sockets (through the relay when
 * impairments are asked for).
 * @module
 */
import { createHash } from "node:crypto";
import { Random } from "./_random.ts";
import { type Clock, realClock, VirtualClock } from "./clock.ts";
import type { QuantumConnection } from "./connection.ts";
import {
  dial,
  type DialOptions,
  listen,
  type ListenOptions,
  type QuantumListener,
} from "./endpoint.ts";
import type { Impairments } from "./impairments.ts";
import { type Relay, startRelay } from "./relay.ts";
import { SimNetwork } from "./sim_net.ts";

/** A way to run listeners and dialers. */
export interface Harness extends AsyncDisposable {
  readonly name: string;
  readonly clock: Clock;
  listen(options?: Omit<ListenOptions, "packetConn" | "clock">): QuantumListener;
  dial(
    listener: QuantumListener,
    options?: Omit<DialOptions, "hostname" | "port" | "packetConn" | "clock">,
  ): Promise<QuantumConnection>;
}

/** Simulated network on a virtual clock. */
export function simHarness(impairments: Impairments = {}): Harness & { net: SimNetwork } {
  const clock = new VirtualClock();
  const net = new SimNetwork({ clock, impairments: { delayMs: 2, ...impairments } });
  const listeners: QuantumListener[] = [];
  return {
    name: "simulated network",
    clock,
    net,
    listen(options = {}) {
      const listener = listen({ ...options, packetConn: net.listen(), clock });
      listeners.push(listener);
      return listener;
    },
    dial(listener, options = {}) {
      return dial({
        ...options,
        hostname: listener.addr.hostname,
        port: listener.addr.port,
        packetConn: net.listen(),
        clock,
      });
    },
    async [Symbol.asyncDispose]() {
      for (const l of listeners) await l.close();
    },
  };
}

/** Real UDP on loopback; through an impairment relay when `impairments` is given. */
export function udpHarness(impairments?: Impairments): Harness & { relays: Relay[] } {
  const listeners: QuantumListener[] = [];
  const relays: Relay[] = [];
  return {
    name: impairments ? "real UDP through the relay" : "real UDP",
    clock: realClock,
    relays,
    listen(options = {}) {
      const listener = listen({ ...options, hostname: "127.0.0.1", port: 0 });
      listeners.push(listener);
      return listener;
    },
    dial(listener, options = {}) {
      let port = listener.addr.port;
      if (impairments) {
        const relay = startRelay({ target: { hostname: "127.0.0.1", port }, impairments });
        relays.push(relay);
        port = relay.addr.port;
      }
      return dial({ ...options, hostname: "127.0.0.1", port });
    },
    async [Symbol.asyncDispose]() {
      for (const l of listeners) await l.close();
      for (const r of relays) await r.close();
    },
  };
}

/** Deterministic pseudo-random bytes. */
export function randomBytes(size: number, seed: number): Uint8Array {
  return new Random(seed).fill(new Uint8Array(size));
}

/** Hex SHA-256. */
export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Write `data` in chunks of `chunk` bytes, then close the writable (FIN). */
export async function writeAll(
  conn: QuantumConnection,
  data: Uint8Array,
  chunk = 64 * 1024,
): Promise<void> {
  const writer = conn.writable.getWriter();
  for (let offset = 0; offset < data.length; offset += chunk) {
    await writer.write(data.subarray(offset, offset + chunk));
  }
  await writer.close();
}

/** Read the readable to its end; returns the SHA-256 and length. */
export async function readAll(
  conn: QuantumConnection,
): Promise<{ sha256: string; length: number }> {
  const hash = createHash("sha256");
  let length = 0;
  for await (const chunk of conn.readable) {
    hash.update(chunk);
    length += chunk.length;
  }
  return { sha256: hash.digest("hex"), length };
}

/**
 * Send `data` from a dialed connection to an accepting server that reads it all, then both
 * close. Returns what the server read and both close reasons.
 */
export async function transfer(
  harness: Harness,
  data: Uint8Array,
  options: { listener?: QuantumListener; dial?: Parameters<Harness["dial"]>[1] } = {},
) {
  const listener = options.listener ?? harness.listen();
  const server = (async () => {
    const conn = await listener.accept();
    if (!conn) throw new Error("listener closed");
    const result = await readAll(conn);
    await conn.close();
    return { ...result, conn };
  })();
  const client = await harness.dial(listener, options.dial);
  await writeAll(client, data);
  const received = await server;
  await client.close();
  return {
    received,
    client,
    server: received.conn,
    clientClose: await client.closed,
    serverClose: await received.conn.closed,
  };
}
