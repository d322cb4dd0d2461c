import assert from "node:assert/strict";
import type { SentPacket } from "./congestion.ts";
import { newReno } from "./newreno.ts";

const MSS = 1000;
const packet = (n: number, sentAt: number): SentPacket => ({ packetNumber: n, bytes: MSS, sentAt });
const ack = (now: number, acked: SentPacket[], lost: SentPacket[] = []) => ({
  now,
  acked,
  lost,
  minRtt: 10,
  priorBytesInFlight: 0,
  bytesInFlight: 0,
});

Deno.test("NewReno starts at 10 MSS, is unpaced and grows by the acked bytes in slow start", () => {
  const cc = newReno({ mss: MSS, now: 0 });
  assert.equal(cc.name, "newreno");
  assert.equal(cc.congestionWindow(), 10 * MSS);
  assert.equal(cc.pacingRate(), Infinity);
  cc.onAck(ack(10, [packet(1, 0), packet(2, 0)]));
  assert.equal(cc.congestionWindow(), 12 * MSS);
});

Deno.test("NewReno halves once per recovery episode and grows by one MSS per window after", () => {
  const cc = newReno({ mss: MSS, now: 0 });
  cc.onAck(ack(10, [], [packet(1, 1), packet(2, 2)]));
  assert.equal(cc.congestionWindow(), 5 * MSS);
  cc.onAck(ack(11, [], [packet(3, 3)])); // sent before recovery began: no second cut
  assert.equal(cc.congestionWindow(), 5 * MSS);
  cc.onAck(ack(12, [packet(4, 5)])); // sent before recovery: no growth
  assert.equal(cc.congestionWindow(), 5 * MSS);
  // Congestion avoidance: 5 acked MSS (one window) add one MSS.
  cc.onAck(ack(30, [1, 2, 3, 4, 5].map((n) => packet(10 + n, 20))));
  assert.equal(cc.congestionWindow(), 6 * MSS);
  cc.onAck(ack(40, [], [packet(20, 31)])); // a loss after recovery: a new episode
  assert.equal(cc.congestionWindow(), 3 * MSS);
});

Deno.test("NewReno collapses to the 2-MSS minimum on persistent congestion and never goes below it", () => {
  const cc = newReno({ mss: MSS, now: 0 });
  cc.onPersistentCongestion(5);
  assert.equal(cc.congestionWindow(), 2 * MSS);
  cc.onAck(ack(10, [packet(1, 6)])); // slow start again toward ssthresh (5 MSS)
  assert.equal(cc.congestionWindow(), 3 * MSS);
  cc.onAck(ack(20, [], [packet(2, 15)])); // a new episode: half of 3 MSS is below the floor
  assert.equal(cc.congestionWindow(), 2 * MSS);
  assert.throws(() => newReno({ mss: 0, now: 0 }), RangeError);
});
