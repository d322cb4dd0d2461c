import assert from "node:assert/strict";
import { RTO_DEFAULTS, RttEstimator } from "./rtt.ts";

Deno.test("RttEstimator follows RFC 6298: first sample sets SRTT = R and RTTVAR = R/2", () => {
  const rtt = new RttEstimator({ minRto: 0, maxAckDelay: 0 });
  assert.equal(rtt.rto(), RTO_DEFAULTS.initialRto);
  rtt.addSample(100);
  assert.equal(rtt.srtt, 100);
  assert.equal(rtt.rttvar, 50);
  assert.equal(rtt.rto(), 100 + 4 * 50);
});

Deno.test("RttEstimator smooths later samples with alpha 1/8 and beta 1/4", () => {
  const rtt = new RttEstimator({ minRto: 0, maxAckDelay: 0 });
  rtt.addSample(100);
  rtt.addSample(60);
  assert.equal(rtt.rttvar, 0.75 * 50 + 0.25 * 40);
  assert.equal(rtt.srtt, 0.875 * 100 + 0.125 * 60);
  assert.equal(rtt.minRtt, 60);
});

Deno.test("RTO is floored at minRto, includes max ACK delay, doubles on timeout and is capped", () => {
  const rtt = new RttEstimator();
  rtt.addSample(1);
  assert.equal(rtt.rto(), RTO_DEFAULTS.minRto); // 1 + max(1, 2) + 5 = 8 < 20
  rtt.onTimeout();
  assert.equal(rtt.rto(), 40);
  for (let i = 0; i < 10; i++) rtt.onTimeout();
  assert.equal(rtt.rto(), RTO_DEFAULTS.maxRto);
  rtt.resetBackoff();
  assert.equal(rtt.rto(), 20);
  const slow = new RttEstimator();
  slow.addSample(40);
  assert.equal(slow.rto(), 40 + 4 * 20 + 5);
});

Deno.test("ACK delay is subtracted only while the sample stays at or above min RTT", () => {
  const rtt = new RttEstimator();
  rtt.addSample(10);
  rtt.addSample(30, 5);
  assert.equal(rtt.latest, 25);
  rtt.addSample(12, 5); // 12 - 5 < min RTT 10: keep 12
  assert.equal(rtt.latest, 12);
  assert.throws(() => rtt.addSample(-1), RangeError);
});
