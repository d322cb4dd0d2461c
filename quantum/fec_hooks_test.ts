/**
 * The built-in FEC stage end to end: connections with the `fec` option over the simulated
 * network (virtual clock) and over real UDP through the relay.
 */
import assert from "node:assert/strict";
import { randomBytes, sha256, simHarness, transfer, udpHarness } from "./_test_util.ts";
import { fecHooks, type FecOptions } from "./fec_hooks.ts";
import type { QuantumConnection } from "./connection.ts";
import { messageChannel } from "./messages.ts";
import { Random } from "./_random.ts";
import { decodePacket, FLAG, MAX_DATAGRAM_SIZE } from "./wire.ts";

const DATA = randomBytes(2 << 20, 11);

Deno.test("at 1% random loss FEC recovers at least 90% of the lost data packets without retransmission", async () => {
  await using harness = simHarness({ delayMs: 5 });
  const random = new Random(5);
  let droppedData = 0;
  let largest = 0;
  harness.net.filter = (data, _from, to) => {
    largest = Math.max(largest, data.length);
    const decoded = decodePacket(data);
    if (!decoded.ok) return false;
    const p = decoded.packet;
    const isData = p.payload.length > 0 && !(p.fec && p.fec.index >= p.fec.dataShards);
    if (random.next() >= 0.01) return false;
    if (isData && to.port === listener.addr.port) droppedData++;
    return true;
  };
  const listener = harness.listen();
  const result = await transfer(harness, DATA, { listener, dial: { fec: {} } });
  assert.equal(result.received.sha256, sha256(DATA));
  const server = result.server.stats();
  const client = result.client.stats();
  assert.ok(droppedData >= 10, `only ${droppedData} data packets dropped`);
  assert.ok(
    server.fecRecovered >= 0.9 * droppedData,
    `recovered ${server.fecRecovered} of ${droppedData} lost data packets`,
  );
  assert.ok(client.retransmits <= droppedData * 0.1 + 2, `retransmits ${client.retransmits}`);
  // Recovered packets are neither RTT samples nor losses: the sender saw (almost) no loss.
  assert.ok(client.fastRetransmits <= droppedData * 0.1 + 2);
  assert.ok(client.fec?.sending && (client.fec.parityPackets ?? 0) > 0);
  assert.equal(server.fec?.sending, false);
  assert.ok(largest <= MAX_DATAGRAM_SIZE, `a datagram of ${largest} bytes was sent`);
});

Deno.test("adaptive FEC sends no parity on a clean path and adds parity once loss appears", async () => {
  await using harness = simHarness({ delayMs: 5 });
  const clean = await transfer(harness, DATA.subarray(0, 1 << 20), {
    dial: { fec: { adaptive: true } },
  });
  const cleanStats = clean.client.stats();
  const cleanFec = cleanStats.fec!;
  assert.equal(cleanFec.parityShards, 0);
  // Overhead against everything sent (only the last, sparse packet is protected).
  assert.ok(
    cleanFec.parityBytes <= 0.05 * cleanStats.bytesSent,
    `parity ${cleanFec.parityBytes} B for ${cleanStats.bytesSent} B`,
  );

  harness.net.setImpairments({ delayMs: 5, loss: 0.03, seed: 9 });
  const lossy = await transfer(harness, DATA, { dial: { fec: { adaptive: true } } });
  assert.equal(lossy.received.sha256, sha256(DATA));
  const fec = lossy.client.stats().fec!;
  assert.ok(fec.parityShards >= 1, `parity ${fec.parityShards}`);
  assert.ok(fec.parityPackets > 0);
  assert.ok(fec.reportsReceived > 0, "the receiver reported its loss in ACKs");
  assert.ok(fec.lossEstimate > 0.005 && fec.lossEstimate < 0.15, `estimate ${fec.lossEstimate}`);
  assert.ok(lossy.server.stats().fecRecovered > 0);
});

/** Once armed, drops the next data datagram (never parity) sent to `port`. */
function dataDropper(harness: ReturnType<typeof simHarness>, port: number) {
  const state = { armed: false, dropped: 0 };
  harness.net.filter = (data, _from, to) => {
    if (!state.armed || to.port !== port) return false;
    const decoded = decodePacket(data);
    if (!decoded.ok || decoded.packet.payload.length === 0) return false;
    const fec = decoded.packet.fec;
    if (fec && fec.index >= fec.dataShards) return false;
    state.armed = false;
    state.dropped++;
    return true;
  };
  return state;
}

/**
 * Sends `warmup` messages, then one whose data packet is dropped; checks it was rebuilt by FEC
 * (no retransmission) within 15 ms at a 10 ms one-way delay.
 */
async function assertSparseLossRepaired(
  fec: FecOptions,
  warmup: number,
  beforeLoss?: (
    conn: QuantumConnection,
  ) => void,
) {
  await using harness = simHarness({ delayMs: 10 });
  const listener = harness.listen({ fec });
  const dropper = dataDropper(harness, listener.addr.port);
  const accepted = listener.accept();
  const conn = await harness.dial(listener, { fec });
  const server = (await accepted)!;
  const serverMessages = messageChannel(server);
  const clientMessages = messageChannel(conn);
  for (let i = 0; i < warmup; i++) {
    await clientMessages.send(new Uint8Array(200).fill(i));
    assert.equal((await serverMessages.receive())?.length, 200);
  }
  beforeLoss?.(conn);
  dropper.armed = true;
  const started = harness.clock.now();
  await clientMessages.send(new Uint8Array(200).fill(99));
  const message = await serverMessages.receive();
  const elapsed = harness.clock.now() - started;
  assert.equal(dropper.dropped, 1, "the message's data packet was dropped");
  assert.deepEqual(message, new Uint8Array(200).fill(99));
  assert.equal(conn.stats().retransmits, 0);
  assert.equal(server.stats().fecRecovered, 1);
  assert.ok(elapsed < 15, `delivered after ${elapsed} ms (one-way delay 10 ms)`);
  await Promise.all([clientMessages.close(), serverMessages.close()]);
  await Promise.all([conn.close(), server.close()]);
}

Deno.test("a sparse message is protected at once: its lost data packet is rebuilt without a retransmission", async () => {
  await assertSparseLossRepaired({}, 1);
});

Deno.test("adaptive FEC protects the first loss of sparse messages on a path that looked clean", async () => {
  await assertSparseLossRepaired({ adaptive: true }, 20, (conn) => {
    assert.equal(conn.stats().fec?.parityShards, 0, "no loss seen: full groups carry no parity");
  });
});

Deno.test("adaptive FEC raises sparse-message parity from the loss its own decoder sees on a lossy path", async () => {
  await using harness = simHarness({ delayMs: 10, loss: 0.05, seed: 3 });
  const listener = harness.listen({ fec: { adaptive: true } });
  const accepted = listener.accept();
  const conn = await harness.dial(listener, { fec: { adaptive: true } });
  const server = (await accepted)!;
  const serverMessages = messageChannel(server);
  const clientMessages = messageChannel(conn);
  const echo = (async () => {
    for (let m = await serverMessages.receive(); m; m = await serverMessages.receive()) {
      await serverMessages.send(m);
    }
  })();
  for (let i = 0; i < 1000; i++) {
    await clientMessages.send(new Uint8Array(200).fill(i & 0xff));
    assert.equal((await clientMessages.receive())?.length, 200);
  }
  const fec = conn.stats().fec!;
  assert.equal(fec.parityShards, 0, "no full groups: no bulk parity");
  assert.ok(fec.shardsMissing > 0, "the client's decoder saw the echoes' losses");
  assert.ok(fec.sparseParityShards >= 2, `sparse parity ${fec.sparseParityShards} at 5% loss`);
  await clientMessages.close();
  await echo;
  await serverMessages.close();
  await Promise.all([conn.close(), server.close()]);
});

Deno.test("FEC transfer over real UDP through the relay at 5% loss arrives byte-exact", async () => {
  await using harness = udpHarness({ loss: 0.05, seed: 21 });
  const result = await transfer(harness, DATA.subarray(0, 1 << 20), { dial: { fec: {} } });
  assert.equal(result.received.sha256, sha256(DATA.subarray(0, 1 << 20)));
  assert.ok(result.server.stats().fecRecovered > 0);
  assert.equal(result.clientClose.reason, "closed");
});

Deno.test("fecHooks() rejects invalid options with RangeError", () => {
  assert.throws(() => fecHooks({ dataShards: 0 }), RangeError);
  assert.throws(() => fecHooks({ parityShards: 17 }), RangeError);
  assert.throws(() => fecHooks({ flushAfterMs: -1 }), RangeError);
  assert.equal(typeof fecHooks(false), "function");
});

Deno.test("a parity datagram of a full-size data packet fits MAX_DATAGRAM_SIZE", async () => {
  await using harness = simHarness({ delayMs: 1 });
  let largestParity = 0;
  harness.net.onSend = (data) => {
    const decoded = decodePacket(data);
    if (decoded.ok && decoded.packet.flags & FLAG.FEC && decoded.packet.seq === 0) {
      largestParity = Math.max(largestParity, data.length);
    }
  };
  const result = await transfer(harness, DATA.subarray(0, 256 << 10), { dial: { fec: {} } });
  assert.equal(result.received.length, 256 << 10);
  assert.ok(largestParity > 1100 && largestParity <= MAX_DATAGRAM_SIZE, `${largestParity}`);
});
