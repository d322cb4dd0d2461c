/**
 * Helper for handshake_test.ts, run in its own process with `--v8-flags=--expose-gc`: floods a
 * listener on the simulated network with spoofed SYNs and prints the heap after a full GC at
 * 10k and at 100k SYNs, plus the listener's stats, as JSON on stdout.
 * @module
 */
import { newId } from "../kernel/mod.ts";
import { Random } from "./_random.ts";
import { VirtualClock } from "./clock.ts";
import { listen } from "./endpoint.ts";
import { SimNetwork } from "./sim_net.ts";
import { encodePacket, FLAG } from "./wire.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("Run with --v8-flags=--expose-gc");
const clock = new VirtualClock({ auto: false });
const net = new SimNetwork({ clock });
const server = net.listen(9000);
const listener = listen({ packetConn: server, clock });
const random = new Random(9);

async function flood(count: number): Promise<void> {
  for (let sent = 0; sent < count; sent += 1000) {
    for (let i = 0; i < 1000; i++) {
      const from: Deno.NetAddr = {
        transport: "udp",
        hostname: `10.${random.int(256)}.${random.int(256)}.1`,
        port: 1024 + random.int(60000),
      };
      const syn = encodePacket({
        flags: FLAG.SYN,
        connectionId: newId(),
        seq: 0,
        ack: 0,
        handshake: { maxPayload: 1088, window: 1024, cookie: new Uint8Array(0) },
        payload: new Uint8Array(0),
      });
      net.inject(syn, from, server.addr);
    }
    await clock.advance(1);
  }
}

await flood(10_000);
gc();
const before = Deno.memoryUsage().heapUsed;
await flood(90_000);
gc();
const after = Deno.memoryUsage().heapUsed;
console.log(JSON.stringify({ before, after, stats: listener.stats() }));
await listener.close();
