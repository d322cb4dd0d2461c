import assert from "node:assert/strict";
import { LatencyHistogram } from "./latency.ts";

Deno.test("LatencyHistogram percentiles are within 1% of the exact order statistics", () => {
  const h = new LatencyHistogram();
  const samples: number[] = [];
  let x = 12345;
  for (let i = 0; i < 10_000; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const ms = 0.05 + (x / 2147483648) ** 3 * 200;
    samples.push(ms);
    h.record(ms);
  }
  samples.sort((a, b) => a - b);
  for (const q of [0.5, 0.95, 0.99]) {
    const exact = samples[Math.ceil(q * samples.length) - 1]!;
    const got = h.quantile(q);
    assert.ok(got >= exact * 0.999 && got <= exact * 1.011, `q=${q}: ${got} vs ${exact}`);
  }
  const s = h.summary();
  assert.equal(s.count, 10_000);
  assert.equal(s.min, samples[0]);
  assert.equal(s.max, samples.at(-1));
  assert.ok(Math.abs(s.avg - samples.reduce((a, b) => a + b, 0) / samples.length) < 1e-9);
});

Deno.test("LatencyHistogram merge adds counts and an empty one reports NaN", () => {
  const a = new LatencyHistogram();
  const b = new LatencyHistogram();
  assert.ok(Number.isNaN(a.summary().p99));
  a.record(1);
  b.record(100);
  a.merge(b);
  assert.equal(a.count, 2);
  assert.equal(a.summary().max, 100);
  assert.equal(a.summary().min, 1);
  assert.throws(() => a.record(-1), RangeError);
});
