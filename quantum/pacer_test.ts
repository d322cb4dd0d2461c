import assert from "node:assert/strict";
import { Pacer } from "./pacer.ts";

const MSS = 1200;

Deno.test("Pacer starts with a full bucket and then spaces packets at the rate", () => {
  const pacer = new Pacer({ now: 0, burstBytes: 2 * MSS, burstMs: 0, rate: 1_200_000 });
  assert.equal(pacer.capacity, 2 * MSS);
  assert.equal(pacer.canSend(0, MSS), true);
  pacer.onSent(0, MSS);
  assert.equal(pacer.canSend(0, MSS), true);
  pacer.onSent(0, MSS);
  assert.equal(pacer.canSend(0, MSS), false);
  // 1.2 MB/s = 1200 bytes per ms.
  assert.equal(pacer.nextSendTime(0, MSS), 1);
  assert.equal(pacer.canSend(0.5, MSS), false);
  assert.equal(pacer.canSend(1, MSS), true);
  pacer.onSent(1, MSS);
  assert.equal(pacer.nextSendTime(1.25, MSS), 2);
});

Deno.test("canSend() holds at exactly nextSendTime() despite floating-point rounding", () => {
  const pacer = new Pacer({ now: 123_456.789, burstBytes: MSS, burstMs: 0, rate: 3_333_333.3 });
  let now = 123_456.789;
  for (let i = 0; i < 10_000; i++) {
    const at = pacer.nextSendTime(now, 1173);
    assert.ok(at >= now);
    assert.equal(pacer.canSend(at, 1173), true, `iteration ${i}`);
    pacer.onSent(at, 1173);
    now = at;
  }
});

Deno.test("a sender that batches per 1 ms wake-up achieves the rate without per-packet timers", () => {
  for (const rate of [500_000, 12_000_000, 100_000_000]) {
    const pacer = new Pacer({ now: 0, burstBytes: 2 * MSS, rate });
    let now = 0;
    let sent = 0;
    let wakeUps = 0;
    let maxBatch = 0;
    while (now < 1000) {
      wakeUps++;
      let batch = 0;
      while (pacer.canSend(now, MSS)) {
        pacer.onSent(now, MSS);
        sent += MSS;
        batch += MSS;
      }
      maxBatch = Math.max(maxBatch, batch);
      // Timers have ~1 ms granularity: never sleep less than that.
      now = Math.max(pacer.nextSendTime(now, MSS), now + 1);
    }
    const achieved = sent / (now / 1000);
    assert.ok(Math.abs(achieved - rate) / rate < 0.05, `rate ${rate}: achieved ${achieved}`);
    assert.ok(wakeUps <= 1001, `${wakeUps} wake-ups`);
    // The largest burst is bounded by the bucket: max(2 MSS, 1 ms of data) plus one packet.
    assert.ok(maxBatch <= pacer.capacity + MSS, `batch ${maxBatch} > ${pacer.capacity}`);
  }
});

Deno.test("bursts never exceed the bucket after an idle period", () => {
  const pacer = new Pacer({ now: 0, burstBytes: 4 * MSS, burstMs: 1, rate: 1_000_000 });
  assert.equal(pacer.capacity, 4 * MSS); // 1 ms at 1 MB/s = 1000 B < 4 MSS
  pacer.onSent(0, 4 * MSS);
  // After 10 s idle the bucket holds only 4 packets.
  let burst = 0;
  while (pacer.canSend(10_000, MSS)) {
    pacer.onSent(10_000, MSS);
    burst++;
  }
  assert.equal(burst, 4);
});

Deno.test("the bucket grows with the rate so one wake-up can fill 1 ms (burstMs)", () => {
  const pacer = new Pacer({ now: 0, burstBytes: 2 * MSS, burstMs: 2, rate: 60_000_000 });
  assert.equal(pacer.capacity, 120_000);
  pacer.setRate(1_000_000);
  assert.equal(pacer.capacity, 2 * MSS);
  assert.ok(pacer.available(0) <= 2 * MSS, "tokens are clipped to the smaller bucket");
});

Deno.test("setRate() with now credits elapsed time at the old rate", () => {
  const a = new Pacer({ now: 0, burstBytes: 100_000, burstMs: 0, rate: 1_000_000 });
  a.onSent(0, 100_000);
  a.setRate(10_000_000, 10); // 10 ms at 1 MB/s = 10 kB
  assert.ok(Math.abs(a.available(10) - 10_000) < 1e-6);
  const b = new Pacer({ now: 0, burstBytes: 100_000, burstMs: 0, rate: 1_000_000 });
  b.onSent(0, 100_000);
  b.setRate(10_000_000); // without now: the new rate applies since the last update
  assert.ok(Math.abs(b.available(10) - 100_000) < 1e-6);
});

Deno.test("an infinite rate means unpaced", () => {
  const pacer = new Pacer({ now: 0, burstBytes: MSS });
  assert.equal(pacer.rate, Infinity);
  for (let i = 0; i < 1000; i++) {
    assert.equal(pacer.canSend(0, MSS), true);
    pacer.onSent(0, MSS);
  }
  assert.equal(pacer.nextSendTime(0, MSS), 0);
  pacer.setRate(1_000_000, 0);
  assert.equal(pacer.available(0), MSS);
});

Deno.test("a packet larger than the bucket goes once the bucket is full, leaving a debt", () => {
  const pacer = new Pacer({ now: 0, burstBytes: 1000, burstMs: 0, rate: 1_000_000 });
  assert.equal(pacer.canSend(0, 3000), true);
  pacer.onSent(0, 3000);
  assert.equal(pacer.available(0), -2000);
  assert.equal(pacer.nextSendTime(0, 3000), 3);
  assert.equal(pacer.canSend(2.9, 3000), false);
  assert.equal(pacer.canSend(3, 3000), true);
});

Deno.test("time running backwards does not mint tokens", () => {
  const pacer = new Pacer({ now: 100, burstBytes: 1000, burstMs: 0, rate: 1_000_000 });
  pacer.onSent(100, 1000);
  assert.equal(pacer.available(50), 0);
  assert.equal(pacer.available(100), 0);
  assert.equal(pacer.available(101), 1000);
});

Deno.test("Pacer rejects invalid options and rates", () => {
  assert.throws(() => new Pacer({ now: 0, burstBytes: 0 }), RangeError);
  assert.throws(() => new Pacer({ now: Number.NaN, burstBytes: 1 }), RangeError);
  assert.throws(() => new Pacer({ now: 0, burstBytes: 1, burstMs: -1 }), RangeError);
  assert.throws(() => new Pacer({ now: 0, burstBytes: 1, rate: 0 }), RangeError);
  const pacer = new Pacer({ now: 0, burstBytes: 1 });
  assert.throws(() => pacer.setRate(-5), RangeError);
  assert.throws(() => pacer.setRate(Number.NaN), RangeError);
});
