import assert from "node:assert/strict";
import { DeliveryRateEstimator } from "./delivery_rate.ts";

const MSS = 1000;

Deno.test("onPacketSent() snapshots delivered, deliveredTime, firstSentTime and app-limited", () => {
  const rate = new DeliveryRateEstimator();
  const first = rate.onPacketSent(5, 1, MSS, MSS);
  assert.deepEqual(first, {
    bytes: MSS,
    sentAt: 5,
    delivered: 0,
    deliveredTime: 5,
    firstSentTime: 5,
    isAppLimited: false,
  });
  // A packet sent while another is in flight keeps the flight's first send time.
  const second = rate.onPacketSent(7, 2, MSS, 2 * MSS);
  assert.equal(second.firstSentTime, 5);
  assert.equal(second.deliveredTime, 5);
  assert.equal(rate.trackedPackets, 2);
});

Deno.test("onAck() computes delivered bytes over the longer of send and ack intervals", () => {
  const rate = new DeliveryRateEstimator();
  // Ten packets sent 1 ms apart from t=0; all acked at t=30 (ack interval 30 > send interval 9).
  for (let i = 0; i < 10; i++) rate.onPacketSent(i, i, MSS, (i + 1) * MSS);
  const acked = Array.from({ length: 10 }, (_, i) => ({ packetNumber: i }));
  const sample = rate.onAck(30, acked, [], 20);
  assert.ok(sample);
  assert.equal(sample.valid, true);
  assert.equal(sample.delivered, 10 * MSS);
  assert.equal(sample.sendInterval, 9);
  assert.equal(sample.ackInterval, 30);
  assert.equal(sample.interval, 30);
  assert.equal(sample.deliveryRate, (10 * MSS * 1000) / 30);
  assert.equal(sample.rtt, 30 - 9);
  assert.equal(sample.priorDelivered, 0);
  assert.equal(rate.delivered, 10 * MSS);
  assert.equal(rate.trackedPackets, 0);
});

Deno.test("onAck() uses the send interval when sending was slower than acking (ACK compression)", () => {
  const rate = new DeliveryRateEstimator();
  rate.onPacketSent(0, 1, MSS, MSS);
  rate.onPacketSent(1, 2, MSS, 2 * MSS);
  rate.onPacketSent(2, 4, MSS, 3 * MSS);
  rate.onAck(10, [{ packetNumber: 1 }], [], 1);
  rate.onAck(11, [{ packetNumber: 2 }], [], 1);
  // Packet 3 leaves late (packet 4 still in flight), then its ACK returns quickly.
  const p3 = rate.onPacketSent(30, 3, MSS, 2 * MSS);
  assert.equal(p3.firstSentTime, 1);
  assert.equal(p3.deliveredTime, 11);
  const sample = rate.onAck(35, [{ packetNumber: 3 }], [], 1);
  assert.ok(sample);
  assert.equal(sample.sendInterval, 29);
  assert.equal(sample.ackInterval, 24);
  assert.equal(sample.interval, 29);
  assert.equal(sample.delivered, MSS);
  assert.equal(sample.deliveryRate, (MSS * 1000) / 29);
});

Deno.test("onAck() discards samples whose interval is shorter than the min RTT", () => {
  const rate = new DeliveryRateEstimator();
  rate.onPacketSent(0, 1, MSS, MSS);
  const sample = rate.onAck(4, [{ packetNumber: 1 }], [], 10);
  assert.ok(sample);
  assert.equal(sample.valid, false);
  assert.equal(sample.interval, -1);
  assert.equal(sample.deliveryRate, 0);
  // The delivered counter still advances.
  assert.equal(rate.delivered, MSS);
});

Deno.test("onAck() picks the most recently sent acknowledged packet as the reference", () => {
  const rate = new DeliveryRateEstimator();
  rate.onPacketSent(0, 1, MSS, MSS);
  rate.onPacketSent(1, 2, MSS, 2 * MSS);
  rate.onAck(20, [{ packetNumber: 1 }], [], 1);
  rate.onPacketSent(21, 3, MSS, 2 * MSS);
  // Packets 2 and 3 acked together (SACK order reversed on purpose).
  const sample = rate.onAck(41, [{ packetNumber: 3 }, { packetNumber: 2 }], [], 1);
  assert.ok(sample);
  // Reference is packet 3: delivered 1000 at send, deliveredTime 20.
  assert.equal(sample.priorDelivered, MSS);
  assert.equal(sample.rtt, 20);
  assert.equal(sample.delivered, 2 * MSS);
  assert.equal(sample.ackInterval, 21);
});

Deno.test("onAck() returns undefined when nothing tracked was acknowledged, and counts lost bytes", () => {
  const rate = new DeliveryRateEstimator();
  assert.equal(rate.onAck(1, [{ packetNumber: 9 }], [], 1), undefined);
  rate.onPacketSent(0, 1, MSS, MSS);
  rate.onPacketSent(0, 2, 500, MSS + 500);
  assert.equal(rate.onAck(10, [], [{ packetNumber: 2 }], 1), undefined);
  assert.equal(rate.trackedPackets, 1);
  const sample = rate.onAck(20, [{ packetNumber: 1 }], [{ packetNumber: 2 }], 1);
  assert.ok(sample);
  assert.equal(sample.lostBytes, 0, "packet 2 was already reported lost");
  assert.equal(sample.ackedBytes, MSS);
  // A duplicate ACK for an already acknowledged packet yields nothing and delivers nothing.
  assert.equal(rate.onAck(21, [{ packetNumber: 1 }], [], 1), undefined);
  assert.equal(rate.delivered, MSS);
});

Deno.test("app-limited marking lasts until the data in flight at marking time is delivered", () => {
  const rate = new DeliveryRateEstimator();
  rate.onPacketSent(0, 1, MSS, MSS);
  rate.onPacketSent(0, 2, MSS, 2 * MSS);
  rate.onAppLimited(2 * MSS);
  assert.equal(rate.isAppLimited, true);
  const p3 = rate.onPacketSent(1, 3, MSS, 3 * MSS);
  assert.equal(p3.isAppLimited, true);
  // Delivering the two packets in flight at marking time is not yet "after" the mark.
  rate.onAck(10, [{ packetNumber: 1 }, { packetNumber: 2 }], [], 1);
  assert.equal(rate.isAppLimited, true);
  const s3 = rate.onAck(11, [{ packetNumber: 3 }], [], 1);
  assert.ok(s3);
  assert.equal(s3.isAppLimited, true, "sample of a packet sent while app-limited is app-limited");
  assert.equal(rate.isAppLimited, false, "phase ends once delivered passes the mark");
  const p4 = rate.onPacketSent(12, 4, MSS, MSS);
  assert.equal(p4.isAppLimited, false);
});

Deno.test("onAppLimited() with nothing in flight and nothing delivered still marks app-limited", () => {
  const rate = new DeliveryRateEstimator();
  rate.onAppLimited(0);
  assert.equal(rate.isAppLimited, true);
  assert.equal(rate.onPacketSent(0, 1, MSS, MSS).isAppLimited, true);
});

Deno.test("a retransmission under the same packet number replaces the snapshot", () => {
  const rate = new DeliveryRateEstimator();
  rate.onPacketSent(0, 1, MSS, MSS);
  rate.onPacketSent(50, 1, MSS, MSS);
  assert.equal(rate.trackedPackets, 1);
  const sample = rate.onAck(60, [{ packetNumber: 1 }], [], 1);
  assert.equal(sample?.rtt, 10);
  rate.onPacketSent(61, 2, MSS, MSS);
  rate.forget(2);
  assert.equal(rate.trackedPackets, 0);
});

Deno.test("steady pacing at a known rate is measured back at that rate", () => {
  const rate = new DeliveryRateEstimator();
  // 1000-byte packets every 1 ms (1 MB/s), one-way path of 10 ms each way (RTT 20 ms).
  const rtt = 20;
  const pending: Array<{ at: number; pn: number }> = [];
  let inflight = 0;
  let last: number | undefined;
  for (let t = 0; t < 200; t++) {
    while (pending.length > 0 && pending[0]!.at <= t) {
      const { pn } = pending.shift()!;
      inflight -= MSS;
      const sample = rate.onAck(t, [{ packetNumber: pn }], [], rtt);
      if (sample?.valid) last = sample.deliveryRate;
    }
    inflight += MSS;
    rate.onPacketSent(t, t, MSS, inflight);
    pending.push({ at: t + rtt, pn: t });
  }
  assert.ok(last !== undefined);
  assert.ok(Math.abs(last - 1_000_000) / 1_000_000 < 0.06, `measured ${last} B/s`);
});

Deno.test("onPacketSent() rejects non-finite times and negative sizes", () => {
  const rate = new DeliveryRateEstimator();
  assert.throws(() => rate.onPacketSent(Number.NaN, 1, MSS, MSS), RangeError);
  assert.throws(() => rate.onPacketSent(0, 1, -1, MSS), RangeError);
});

Deno.test("a retransmission acknowledged sooner than the min RTT counts as delivered but is no sample", () => {
  const rate = new DeliveryRateEstimator();
  rate.onPacketSent(0, 1, MSS, MSS);
  // Packet 1 was (spuriously) declared lost and resent as packet number 2 at t=19; the ACK at
  // t=20 is for the original transmission, so packet 2's fresh snapshot must not be the
  // reference (it would make a new round and a rate over 1 ms).
  rate.onAck(19, [], [{ packetNumber: 1 }], 20);
  rate.onPacketSent(19, 2, MSS, MSS);
  const sample = rate.onAck(20, [{ packetNumber: 2, retransmitted: true }], [], 20);
  assert.equal(sample, undefined);
  assert.equal(rate.delivered, MSS);
  assert.equal(rate.trackedPackets, 0);
  // The same retransmission acknowledged a full RTT later is a normal sample.
  rate.onPacketSent(30, 3, MSS, MSS);
  const later = rate.onAck(51, [{ packetNumber: 3, retransmitted: true }], [], 20);
  assert.ok(later);
  assert.equal(later.priorDelivered, MSS);
});
