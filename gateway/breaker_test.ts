import assert from "node:assert/strict";
import { AppError } from "../kernel/mod.ts";
import { Breaker, BreakerRegistry, isBreakerFailure } from "./breaker.ts";

function manualClock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

Deno.test("breaker: drop ratio follows (total - protection - k*accepts)/(total+1)", () => {
  const clock = manualClock();
  const breaker = new Breaker("t", { clock, random: () => 0.99 });
  // 10 requests, 2 successes in one bucket; failingBuckets = 0 (mixed bucket), so w = 1.5.
  for (let i = 0; i < 8; i++) breaker.markFailure();
  for (let i = 0; i < 2; i++) breaker.markSuccess();
  assert.equal(breaker.dropRatio(), (10 - 5 - 1.5 * 2) / 11);
});

Deno.test("breaker: k falls toward 1.1 as consecutive failing buckets grow", () => {
  const clock = manualClock();
  const breaker = new Breaker("t", { clock });
  breaker.markSuccess();
  for (let b = 0; b < 8; b++) {
    clock.advance(250);
    breaker.markFailure();
  }
  // 8 failing buckets at the tail: w = 1.5 - 0.4 * 8/40 = 1.42
  const w = 1.5 - (1.5 - 1.1) * 8 / 40;
  assert.ok(Math.abs(breaker.dropRatio() - (9 - 5 - w * 1) / 10) < 1e-12);
  assert.equal(breaker.stats().failingBuckets, 8);
});

Deno.test("breaker: stays closed under protection and with healthy traffic", () => {
  const clock = manualClock();
  const breaker = new Breaker("t", { clock, random: () => 0 });
  for (let i = 0; i < 5; i++) breaker.markFailure();
  assert.ok(breaker.dropRatio() <= 0, "5 failures are within protection");
  assert.ok(breaker.allow());
  for (let i = 0; i < 100; i++) breaker.markSuccess();
  for (let i = 0; i < 30; i++) breaker.markFailure();
  assert.ok(breaker.dropRatio() <= 0);
  assert.equal(breaker.stats().state, "closed");
});

Deno.test("breaker: opens on failures, forces one call per second through, closes as the window rolls", () => {
  const clock = manualClock();
  let random = 0; // always below the ratio: drop unless forced
  const breaker = new Breaker("t", { clock, random: () => random });
  for (let i = 0; i < 20; i++) breaker.markFailure();
  assert.equal(breaker.stats().state, "open");
  assert.ok(breaker.allow(), "first call is forced through (none passed for 1 s)");
  assert.ok(!breaker.allow(), "then dropped");
  clock.advance(500);
  assert.ok(!breaker.allow());
  clock.advance(600);
  assert.ok(breaker.allow(), "one forced through after 1 s");
  assert.ok(breaker.stats().rejected >= 2);
  random = 0.999999; // dropping is probabilistic: a high draw passes
  assert.ok(breaker.allow());
  clock.advance(10_001);
  assert.equal(breaker.stats().total, 0, "the 10 s window forgot the failures");
  assert.equal(breaker.stats().state, "closed");
});

Deno.test("breaker: successes after an outage close it again", () => {
  const clock = manualClock();
  const breaker = new Breaker("t", { clock, random: () => 0.5 });
  for (let i = 0; i < 20; i++) breaker.markFailure();
  assert.equal(breaker.stats().state, "open");
  clock.advance(300);
  for (let i = 0; i < 12; i++) breaker.markSuccess(); // 32 total, 12 accepts: 32-5-18 = 9 > 0
  assert.equal(breaker.stats().state, "open");
  for (let i = 0; i < 17; i++) breaker.markSuccess(); // 49 total, 29 accepts: 49-5-43.5 > 0
  assert.equal(breaker.stats().state, "open");
  breaker.markSuccess(); // 50 total, 30 accepts: 50-5-45 = 0
  assert.equal(breaker.stats().state, "closed");
  assert.ok(breaker.allow());
});

Deno.test("breaker: gRPC codes counted as failures match go-zero's list", () => {
  const failures = [4, 13, 14, 15, 12, 8];
  for (let code = 0; code <= 16; code++) {
    assert.equal(isBreakerFailure(code), failures.includes(code), `code ${code}`);
  }
});

Deno.test("breaker registry: run() fails fast with UNAVAILABLE when open, and reset closes it", async () => {
  const clock = manualClock();
  const registry = new BreakerRegistry({ clock, random: () => 0 });
  const failing = () => Promise.reject(new AppError("UNAVAILABLE", "down"));
  for (let i = 0; i < 20; i++) await registry.run("svc/M", failing).catch(() => {});
  await registry.run("svc/M", failing).catch(() => {}); // forced probe
  let calls = 0;
  await assert.rejects(
    registry.run("svc/M", () => {
      calls++;
      return Promise.resolve(1);
    }),
    (error: AppError) => error.status === "UNAVAILABLE" && /breaker open/.test(error.message),
  );
  assert.equal(calls, 0);
  // NOT_FOUND is the caller's problem, not the backend's: not a failure.
  await registry.run("svc/Other", () => Promise.reject(new AppError("NOT_FOUND", "x")))
    .catch(() => {});
  assert.equal(registry.stats().find((s) => s.name === "svc/Other")!.accepts, 1);
  assert.equal(registry.reset("svc/M"), 1);
  assert.equal(await registry.run("svc/M", () => Promise.resolve(7)), 7);
});
