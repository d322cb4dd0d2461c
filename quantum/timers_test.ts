/**
 * Timer behaviour checked on a manual virtual clock: nothing sleeps, every instant is exact.
 */
import assert from "node:assert/strict";
import { AppError } from "../kernel/mod.ts";
import { VirtualClock } from "./clock.ts";
import type { ConnectionOptions } from "./connection.ts";
import { dial, listen } from "./endpoint.ts";
import { SimNetwork } from "./sim_net.ts";
import { decodePacket, FLAG, type Packet } from "./wire.ts";

interface Sent {
  t: number;
  fromClient: boolean;
  packet: Packet;
}

async function setup(options: ConnectionOptions = {}) {
  const clock = new VirtualClock({ auto: false });
  const net = new SimNetwork({ clock, impairments: { delayMs: 1 } });
  const serverConn = net.listen(9000);
  const listener = listen({ ...options, packetConn: serverConn, clock });
  const clientConn = net.listen();
  const log: Sent[] = [];
  net.onSend = (data, from) => {
    const result = decodePacket(data);
    if (result.ok) {
      log.push({
        t: clock.now(),
        fromClient: from.port === clientConn.addr.port,
        packet: result.packet,
      });
    }
  };
  const dialing = dial({
    ...options,
    hostname: "10.0.0.1",
    port: 9000,
    packetConn: clientConn,
    clock,
  });
  await clock.advance(5);
  const client = await dialing;
  const accepting = listener.accept();
  await clock.advance(5);
  const server = (await accepting)!;
  return {
    clock,
    net,
    listener,
    client,
    server,
    log,
    async [Symbol.asyncDispose]() {
      client.abort();
      await listener.close();
      await clock.advance(10);
    },
  };
}

const dataFromClient = (log: Sent[], seq?: number) =>
  log.filter((s) =>
    s.fromClient && s.packet.payload.length > 0 && (seq === undefined || s.packet.seq === seq)
  );

Deno.test("RTO doubles on every expiry, is capped, resets once new data is acknowledged; Karn takes no sample", async () => {
  await using s = await setup();
  const baseRto = s.client.stats().rtoMs;
  const srttBefore = s.client.stats().rttMs;
  assert.equal(baseRto, 20); // SRTT 2 ms + max(1, 4·1) + 5 ms max ACK delay < 20 ms floor
  s.net.filter = (_data, from) => from.port !== 9000; // client → server is black-holed
  const writer = s.client.writable.getWriter();
  await writer.write(new Uint8Array(500));
  await s.clock.advance(6000);
  const sends = dataFromClient(s.log, 1);
  const probes = s.client.stats().tailLossProbes;
  assert.equal(probes, 2, "two tail loss probes precede the first RTO");
  // Transmissions after the probes are RTO-driven: intervals double (20, 40, ... capped 2000).
  const rtoSends = sends.slice(1 + probes).map((x) => x.t);
  const first = sends[0]!.t;
  const expected = [first + 20];
  for (let rto = 40; expected.length < rtoSends.length; rto = Math.min(rto * 2, 2000)) {
    expected.push(expected.at(-1)! + rto);
  }
  assert.deepEqual(rtoSends, expected);
  assert.ok(rtoSends.length >= 7);
  assert.equal(s.client.stats().rtoMs, 2000);
  // Heal the path: the next retransmission is acknowledged and the backoff is gone.
  s.net.filter = undefined;
  await s.clock.advance(2100);
  assert.equal(s.client.stats().rtoMs, baseRto);
  assert.equal(s.client.stats().sendBufferedBytes, 0);
  // Karn's rule: the ACK of a retransmitted packet (first sent ~4 s earlier) gives no sample.
  assert.equal(s.client.stats().rttMs, srttBefore);
  assert.equal(s.client.state, "open");
});

Deno.test("fast retransmit: a lost packet is resent once later packets are SACKed, before any RTO", async () => {
  await using s = await setup();
  let dropped = 0;
  s.net.filter = (data, from) => {
    const r = decodePacket(data);
    if (from.port !== 9000 && r.ok && r.packet.seq === 3 && r.packet.payload.length > 0) {
      return dropped++ === 0; // drop the first transmission of packet 3 only
    }
    return false;
  };
  const payload = new Uint8Array(10 * 1088).map((_, i) => i & 0xff);
  const writer = s.client.writable.getWriter();
  await writer.write(payload);
  const start = s.clock.now();
  await s.clock.advance(8); // < the 20 ms RTO
  const sends = dataFromClient(s.log, 3);
  assert.equal(sends.length, 2);
  assert.ok(sends[1]!.t - start < 20, `resent after ${sends[1]!.t - start} ms`);
  const stats = s.client.stats();
  assert.equal(stats.rtoCount, 0);
  assert.ok(stats.fastRetransmits >= 1);
  const reader = s.server.readable.getReader();
  const received: number[] = [];
  while (received.length < payload.length) {
    const { value } = await reader.read();
    received.push(...value!);
  }
  assert.deepEqual(Uint8Array.from(received), payload);
});

Deno.test("ACK decimation: one ACK per received batch, at once after 8 packets, at once on a gap", async () => {
  await using s = await setup();
  const acksFromServer = () =>
    s.log.filter((x) => !x.fromClient && x.packet.payload.length === 0 && x.packet.ack > 1);
  const writer = s.client.writable.getWriter();
  // 4 packets leave together and arrive in one turn (one instant): one ACK covers them.
  await writer.write(new Uint8Array(4 * 1088));
  await s.clock.advance(1.5);
  let acks = acksFromServer();
  assert.equal(acks.length, 1, `ACKs ${acks.map((a) => a.packet.ack)}`);
  assert.equal(acks[0]!.packet.ack, 5);
  await s.clock.advance(10);
  // 12 packets in one batch: an ACK at the 8th, one for the rest at the end of the turn.
  const before = acksFromServer().length;
  await writer.write(new Uint8Array(12 * 1088));
  await s.clock.advance(1.5);
  acks = acksFromServer().slice(before);
  assert.deepEqual(acks.map((a) => a.packet.ack), [13, 17]);
  // A gap is ACKed at once (with a SACK block), not held for the batch.
  await s.clock.advance(10);
  let dropped = false;
  s.net.filter = (data, from) => {
    const r = decodePacket(data);
    if (from.port === 9000 || !r.ok || r.packet.payload.length === 0 || dropped) return false;
    return (dropped = true);
  };
  const gapBefore = acksFromServer().length;
  await writer.write(new Uint8Array(3 * 1088));
  await s.clock.advance(1.5);
  const gapAcks = acksFromServer().slice(gapBefore);
  assert.ok(gapAcks.length >= 2, `ACKs on a gap: ${gapAcks.length}`);
  assert.ok(gapAcks[0]!.packet.ackInfo!.sack.length > 0);
});

Deno.test("keepalive pings flow after keepaliveMs of silence and keep an idle connection open", async () => {
  await using s = await setup({ keepaliveMs: 1000, idleTimeoutMs: 3000 });
  const before = s.log.length;
  await s.clock.advance(10_000);
  const after = s.log.slice(before);
  const pings = after.filter((x) => x.packet.flags & FLAG.PSH && x.packet.payload.length === 0);
  assert.ok(pings.length >= 9, `${pings.length} pings`);
  // Each side sends something (a ping, or the ACK of the other's ping) at least every second.
  for (const fromClient of [true, false]) {
    const times = after.filter((x) => x.fromClient === fromClient).map((x) => x.t);
    assert.ok(times[0]! <= after[0]!.t + 1000 + 1e-9);
    for (let i = 1; i < times.length; i++) assert.ok(times[i]! - times[i - 1]! <= 1000 + 1e-9);
    assert.ok(s.clock.now() - times.at(-1)! <= 1000 + 1e-9);
  }
  assert.equal(s.client.state, "open");
  assert.equal(s.server.state, "open");
});

Deno.test("idle timeout closes a connection whose peer went silent, at exactly the timeout", async () => {
  await using s = await setup({ idleTimeoutMs: 3000 });
  s.net.filter = () => true; // total blackout
  const silentFrom = s.clock.now();
  await s.clock.advance(3500);
  const info = await s.client.closed;
  assert.equal(info.reason, "idle_timeout");
  assert.equal((await s.server.closed).reason, "idle_timeout");
  assert.ok(s.clock.now() >= silentFrom + 3000);
  await assert.rejects(
    s.client.writable.getWriter().write(new Uint8Array(1)),
    (e) => e instanceof AppError && e.status === "UNAVAILABLE",
  );
});

Deno.test("the SYN is retransmitted with backoff and dial fails with handshake_timeout", async () => {
  const clock = new VirtualClock({ auto: false });
  const net = new SimNetwork({ clock, impairments: { delayMs: 1 } });
  const times: number[] = [];
  net.onSend = (_d, _from) => times.push(clock.now());
  const dialing = dial({
    hostname: "10.0.0.1",
    port: 9999, // nobody listens
    packetConn: net.listen(),
    clock,
    handshakeTimeoutMs: 3000,
  });
  const outcome = dialing.then(() => null, (e) => e);
  await clock.advance(3100);
  const error = await outcome;
  assert.ok(error instanceof AppError);
  assert.equal((error.details as { reason: string }).reason, "handshake_timeout");
  assert.deepEqual(times, [0, 200, 600, 1400]);
});

Deno.test("a lone data packet without PSH is acknowledged after exactly maxAckDelay", async () => {
  await using s = await setup({ maxAckDelayMs: 5 });
  // Two packets leave back to back; the second (PSH, end of burst) is dropped, so the first
  // arrives alone and must wait for the delayed-ACK timer.
  s.net.filter = (data, from) => {
    const r = decodePacket(data);
    return from.port !== 9000 && r.ok && r.packet.seq === 2 && r.packet.payload.length > 0;
  };
  const before = s.log.length;
  await s.client.writable.getWriter().write(new Uint8Array(1088 + 10));
  await s.clock.advance(4);
  const ack = () =>
    s.log.slice(before).find((x) =>
      !x.fromClient && x.packet.ack === 2 && x.packet.payload.length === 0
    );
  assert.equal(ack(), undefined, "no ACK before the delay");
  await s.clock.advance(3);
  const sentAt = s.log.slice(before).find((x) => x.fromClient && x.packet.seq === 1)!.t;
  assert.equal(ack()!.t, sentAt + 1 + 5); // arrival (1 ms link) + 5 ms max ACK delay
  assert.ok(ack()!.packet.ackInfo!.ackDelayMicros >= 4999);
});

Deno.test("a lone packet in flight waits for the peer's delayed ACK before a tail loss probe, and an ACK clears the probe", async () => {
  await using s = await setup({ maxAckDelayMs: 5 });
  // Small messages far apart (a slow request stream): each is alone in flight, so the server
  // ACKs it maxAckDelay after arrival (1 ms link: ACK back 7 ms after the send). A probe at
  // 2·SRTT + maxAckDelay/2 (6.5 ms with SRTT 2 ms) would resend every one of them.
  const reading = s.server.readable.pipeTo(new WritableStream()).catch(() => {});
  const writer = s.client.writable.getWriter();
  const before = s.log.length;
  for (let i = 0; i < 10; i++) {
    await writer.write(new Uint8Array(300));
    await s.clock.advance(20);
  }
  const sent = s.log.slice(before).filter((x) => x.fromClient && x.packet.payload.length > 0);
  assert.equal(sent.length, 10, "each message left once");
  assert.equal(s.client.stats().tailLossProbes, 0);
  assert.equal(s.client.stats().retransmits, 0);
  // Nothing outstanding: no timer is due before the keepalive (no early wake-up for a probe).
  const quiet = s.log.length;
  await s.clock.advance(1000);
  assert.equal(s.log.length, quiet, "nothing sent while idle");
  writer.releaseLock();
  await s.listener.close(); // resets the server side: the pipe ends
  await reading;
});

// ------------------------------------------------------------------ probe timeouts (issue 11)

const MSS_PAYLOAD = 1088;

/** Writes `packets` full packets, lets them be acknowledged, and returns a reader of everything. */
async function warmUp(s: Awaited<ReturnType<typeof setup>>, packets: number) {
  const received: number[] = [];
  const reader = s.server.readable.getReader();
  (async () => {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return;
      received.push(value.length);
    }
  })().catch(() => {});
  const writer = s.client.writable.getWriter();
  await writer.write(new Uint8Array(packets * MSS_PAYLOAD));
  await s.clock.advance(50);
  assert.equal(s.client.stats().bytesInFlight, 0);
  return { writer, receivedBytes: () => received.reduce((a, b) => a + b, 0) };
}

for (const congestion of ["bbr", "newreno"] as const) {
  Deno.test(`[${congestion}] a stall longer than the RTO with nothing lost resends at most a few probes and keeps cwnd`, async () => {
    await using s = await setup({ congestion });
    const { writer, receivedBytes } = await warmUp(s, 200);
    const before = s.client.stats();
    // ACKs are held (a scheduling stall on the ACK path) while a 30-packet flight is sent.
    const held: Array<[Uint8Array, Deno.NetAddr, Deno.NetAddr]> = [];
    s.net.filter = (data, from, to) => from.port === 9000 && held.push([data, from, to]) > 0;
    await writer.write(new Uint8Array(30 * MSS_PAYLOAD));
    await s.clock.advance(70); // > RTO (20 ms) + backoff (40 ms): two probe timeouts
    s.net.filter = undefined;
    for (const [data, from, to] of held) s.net.inject(data, from, to);
    await s.clock.advance(20);
    const after = s.client.stats();
    assert.equal(after.rtoCount - before.rtoCount, 2, "the stall did fire the timer twice");
    const retransmits = after.retransmits - before.retransmits;
    const tlps = after.tailLossProbes - before.tailLossProbes;
    assert.ok(retransmits <= tlps + 2 * 2, `${retransmits} retransmits: the flight was resent`);
    assert.equal(after.fastRetransmits, before.fastRetransmits, "nothing declared lost");
    assert.equal(after.persistentCongestion, 0);
    assert.ok(after.cwndBytes >= before.cwndBytes, `cwnd ${before.cwndBytes} → ${after.cwndBytes}`);
    assert.equal(after.bytesInFlight, 0);
    assert.equal(receivedBytes(), 230 * MSS_PAYLOAD);
  });

  Deno.test(`[${congestion}] a lost tail whose tail loss probes are lost too is repaired from the probe timeout's ACK`, async () => {
    await using s = await setup({ congestion });
    const { writer, receivedBytes } = await warmUp(s, 200);
    const before = s.client.stats();
    // The last 10 packets of a 30-packet flight and every retransmission in the next 15 ms
    // (both tail loss probes) are lost; the probe timeout's probes (at ~22 ms) get through.
    const start = s.clock.now();
    const tailFrom = 201 + 20;
    s.net.filter = (data, from) => {
      const r = decodePacket(data);
      return from.port !== 9000 && r.ok && r.packet.payload.length > 0 &&
        r.packet.seq >= tailFrom && s.clock.now() < start + 15;
    };
    await writer.write(new Uint8Array(30 * MSS_PAYLOAD));
    await s.clock.advance(30);
    const after = s.client.stats();
    assert.equal(receivedBytes(), 230 * MSS_PAYLOAD, "the tail was recovered within 30 ms");
    assert.equal(after.rtoCount - before.rtoCount, 1);
    assert.ok(
      after.fastRetransmits - before.fastRetransmits >= 8,
      "the ACK of a probe found the loss",
    );
    assert.equal(after.persistentCongestion, 0, "one timeout is not persistent congestion");
    assert.ok(
      after.cwndBytes >= before.cwndBytes / 2,
      `cwnd ${before.cwndBytes} → ${after.cwndBytes}: at most one reduction`,
    );
  });

  Deno.test(`[${congestion}] a blackhole backs the timer off with two probes per expiry, then the connection fails`, async () => {
    await using s = await setup({ congestion, idleTimeoutMs: 3000 });
    const { writer } = await warmUp(s, 200);
    const before = s.client.stats();
    const from = s.log.length;
    s.net.filter = () => true; // the peer is gone
    await writer.write(new Uint8Array(30 * MSS_PAYLOAD));
    const firstSeq = 201;
    await s.clock.advance(200);
    // A timeout alone does not cut the window: only ACK-detected loss may.
    assert.ok(s.client.stats().cwndBytes >= before.cwndBytes);
    await s.clock.advance(3000);
    assert.equal((await s.client.closed).reason, "idle_timeout");
    const resent = s.log.slice(from).filter((x) =>
      x.fromClient && x.packet.payload.length > 0 && x.t > s.log[from]!.t + 15
    );
    const expiries = s.client.stats().rtoCount - before.rtoCount;
    assert.ok(expiries >= 5, `${expiries} expiries`);
    // Each expiry probes the head and the tail of the flight, nothing else.
    assert.equal(resent.length, 2 * expiries);
    for (const x of resent) assert.ok([firstSeq, firstSeq + 29].includes(x.packet.seq));
    const times = [...new Set(resent.map((x) => x.t))];
    for (let i = 2; i < times.length; i++) {
      assert.ok(times[i]! - times[i - 1]! >= times[i - 1]! - times[i - 2]!, "backoff");
    }
  });

  Deno.test(`[${congestion}] loss found by ACKs after repeated timeouts is persistent congestion, and the data is then recovered`, async () => {
    await using s = await setup({ congestion });
    const { writer, receivedBytes } = await warmUp(s, 200);
    const start = s.clock.now();
    s.net.filter = () => s.clock.now() < start + 100; // a 100 ms outage: expiries at ~20, ~60 ms
    await writer.write(new Uint8Array(30 * MSS_PAYLOAD));
    await s.clock.advance(150);
    const stats = s.client.stats();
    assert.equal(stats.persistentCongestion, 1);
    await s.clock.advance(100);
    assert.equal(receivedBytes(), 230 * MSS_PAYLOAD);
  });
}
