/**
 * The datagram-hook seam FEC plugs into, exercised with a toy "replication FEC": every data
 * datagram is also sent wrapped in a parity packet whose payload is the whole datagram.
 */
import assert from "node:assert/strict";
import type { DatagramHooks } from "./hooks.ts";
import { encodePacket, FLAG, type Packet } from "./wire.ts";
import { randomBytes, sha256, simHarness, transfer } from "./_test_util.ts";

function replicationFec(log: { sent: number; parityIn: number; timers: number }): DatagramHooks {
  let deadline = Infinity;
  return {
    onSendData(datagram, packet, emit, now) {
      emit(datagram);
      log.sent++;
      const parity: Packet = {
        flags: FLAG.FEC | FLAG.ACK,
        connectionId: packet.connectionId,
        seq: 0,
        ack: packet.ack,
        ackInfo: { window: packet.ackInfo!.window, ackDelayMicros: 0, sack: [] },
        fec: { group: packet.seq, index: 1, dataShards: 1, parityShards: 1 },
        payload: datagram,
      };
      emit(encodePacket(parity));
      deadline = now + 3; // pretend a group flush is due
    },
    onReceiveFec(packet) {
      log.parityIn++;
      return [packet.payload.slice()]; // "recovered" datagram
    },
    nextDeadline: () => deadline,
    onTimer() {
      log.timers++;
      deadline = Infinity;
    },
  };
}

Deno.test("datagram hooks see every data datagram, parity reaches the peer's hook, recovered packets feed the stream", async () => {
  await using harness = simHarness({ loss: 0.1, delayMs: 5, seed: 41 });
  const sender = { sent: 0, parityIn: 0, timers: 0 };
  const receiver = { sent: 0, parityIn: 0, timers: 0 };
  const listener = harness.listen({ datagramHooks: () => replicationFec(receiver) });
  const data = randomBytes(512 * 1024, 42);
  const result = await transfer(harness, data, {
    listener,
    dial: { datagramHooks: () => replicationFec(sender) },
  });
  assert.equal(result.received.sha256, sha256(data));
  const client = result.client.stats();
  const server = result.server.stats();
  assert.ok(sender.sent >= client.packetsSent / 2 - 50, "the hook saw the data datagrams");
  assert.ok(receiver.parityIn > 400, `server hook got ${receiver.parityIn} parity packets`);
  // Only recoveries that delivered data the network lost count (~10% of the data packets).
  assert.ok(server.fecRecovered > 10, `recovered ${server.fecRecovered}`);
  assert.ok(server.fecRecovered < sender.sent / 4, `recovered ${server.fecRecovered}`);
  assert.ok(server.duplicates > 300, "parity copies of data that did arrive are duplicates");
  assert.ok(sender.timers > 0, "the hook's deadline drove onTimer");
  assert.equal(server.drops.fec_unsupported, undefined);
});

Deno.test("parity packets without a hook are dropped and counted as fec_unsupported", async () => {
  await using harness = simHarness({ delayMs: 1 });
  // Hooks without onReceiveFec replace the built-in FEC decoder: the server cannot take parity.
  const listener = harness.listen({ datagramHooks: () => ({}) });
  const data = randomBytes(64 * 1024, 43);
  const result = await transfer(harness, data, {
    listener,
    dial: { datagramHooks: () => replicationFec({ sent: 0, parityIn: 0, timers: 0 }) },
  });
  assert.equal(result.received.sha256, sha256(data));
  assert.ok((result.server.stats().drops.fec_unsupported ?? 0) > 50);
  assert.equal(result.server.stats().fecRecovered, 0);
});
