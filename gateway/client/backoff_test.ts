import assert from "node:assert/strict";
import { backoffDelay } from "./backoff.ts";

Deno.test("backoffDelay() is uniform below a ceiling that doubles up to the cap", () => {
  const options = { baseMs: 100, maxMs: 3_000 };
  const ceilings = [100, 200, 400, 800, 1600, 3000, 3000, 3000];
  for (const [attempt, ceiling] of ceilings.entries()) {
    assert.equal(backoffDelay(attempt, { ...options, random: () => 0 }), 0);
    assert.equal(backoffDelay(attempt, { ...options, random: () => 0.5 }), ceiling / 2);
    const top = backoffDelay(attempt, { ...options, random: () => 0.9999999 });
    assert.ok(top < ceiling && top >= ceiling - 1, `attempt ${attempt}: ${top} < ${ceiling}`);
  }
  assert.equal(backoffDelay(10_000, { ...options, random: () => 0.5 }), 1_500, "no overflow");
});

Deno.test("backoffDelay() spreads many clients over the whole window (full jitter)", () => {
  let seed = 7;
  const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
  const delays = Array.from(
    { length: 2_000 },
    () => backoffDelay(4, { baseMs: 250, maxMs: 10_000, random }),
  );
  const buckets = new Array(10).fill(0);
  for (const d of delays) buckets[Math.floor(d / 400)]++;
  // 4000 ms window, 10 buckets of 400 ms: each holds about 200 of 2000.
  for (const count of buckets) assert.ok(count > 140 && count < 260, `bucket ${count}`);
});

Deno.test("backoffDelay() rejects bad arguments", () => {
  assert.throws(() => backoffDelay(-1, { baseMs: 1, maxMs: 2 }), RangeError);
  assert.throws(() => backoffDelay(1.5, { baseMs: 1, maxMs: 2 }), RangeError);
  assert.throws(() => backoffDelay(1, { baseMs: 0, maxMs: 2 }), RangeError);
  assert.throws(() => backoffDelay(1, { baseMs: 5, maxMs: 2 }), RangeError);
});
