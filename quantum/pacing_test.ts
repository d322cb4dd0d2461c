/** Pacing inside a connection: packets leave at the controller's rate, batched per wake-up. */
import assert from "node:assert/strict";
import { type Clock, VirtualClock } from "./clock.ts";
import { dial, listen } from "./endpoint.ts";
import { SimNetwork } from "./sim_net.ts";
import { randomBytes, readAll, sha256, writeAll } from "./_test_util.ts";
import { decodePacket } from "./wire.ts";

Deno.test("a paced BBR transfer sends in batches per timer wake-up, not one timer per packet", async () => {
  const virtual = new VirtualClock();
  let fired = 0;
  const clock: Clock = {
    now: () => virtual.now(),
    setTimer: (delayMs, callback) =>
      virtual.setTimer(delayMs, () => {
        fired++;
        callback();
      }),
    defer: (callback) => virtual.defer(callback),
  };
  // 2.5 MB/s bottleneck, 20 ms RTT: the sender is paced (BBR), not window-limited bursts.
  const net = new SimNetwork({
    clock: virtual,
    impairments: { delayMs: 10, bandwidthBytesPerSec: 2_500_000, queueBytes: 256 * 1024 },
  });
  const serverConn = net.listen();
  const listener = listen({ packetConn: serverConn, clock: virtual });
  const clientConn = net.listen();
  const dataPackets: number[] = []; // send times of data packets from the client
  net.onSend = (bytes, from) => {
    if (from.port !== clientConn.addr.port) return;
    const decoded = decodePacket(bytes);
    if (decoded.ok && decoded.packet.payload.length > 0) dataPackets.push(virtual.now());
  };
  const data = randomBytes(2 << 20, 5);
  const server = (async () => {
    const conn = (await listener.accept())!;
    const result = await readAll(conn);
    await conn.close();
    return result;
  })();
  const conn = await dial({
    hostname: listener.addr.hostname,
    port: listener.addr.port,
    packetConn: clientConn,
    clock,
  });
  const started = virtual.now();
  await writeAll(conn, data);
  const received = await server;
  const elapsed = virtual.now() - started;
  await conn.close();
  await listener.close();
  assert.equal(received.sha256, sha256(data));
  const stats = conn.stats();
  assert.equal(stats.congestionControl, "bbr");
  assert.ok(Number.isFinite(stats.pacingRate) && stats.pacingRate > 0);
  // The sender's timer wake-ups (all its timers) are far fewer than its data packets: batching.
  assert.ok(fired < dataPackets.length / 4, `${fired} wake-ups for ${dataPackets.length} packets`);
  // ...and the packets are spread over time, not sent as whole windows at once: no 1 ms slot
  // holds more than the pacer's burst (10 packets or 2 ms at the pacing rate) plus ACK clocking.
  const perMs = new Map<number, number>();
  for (const t of dataPackets) perMs.set(Math.floor(t), (perMs.get(Math.floor(t)) ?? 0) + 1);
  const busiest = Math.max(...perMs.values());
  assert.ok(busiest <= 40, `${busiest} packets in one ms`);
  // Goodput near the bottleneck: pacing does not throttle below the link.
  const rate = data.length / (elapsed / 1000);
  assert.ok(rate > 1_000_000, `${rate} B/s`);
});
