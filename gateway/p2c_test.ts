import assert from "node:assert/strict";
import { AppError } from "../kernel/mod.ts";
import { balancedCall, DECAY_MS, isNodeFailure, P2cBalancer } from "./p2c.ts";

/** A manual monotonic clock. */
function manualClock(start = 1000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

/** A scripted random source (cycles through `values`). */
function scripted(values: number[]) {
  let i = 0;
  return () => values[i++ % values.length]!;
}

function nodes(...ids: string[]) {
  return ids.map((id) => ({ id, value: `addr-${id}` }));
}

/** One call on `balancer` that takes `ms` on the clock and ends with `error`. */
function run(
  balancer: P2cBalancer<string>,
  clock: ReturnType<typeof manualClock>,
  ms: number,
  error?: unknown,
): string {
  const picked = balancer.pick()!;
  clock.advance(ms);
  picked.done(error);
  return picked.id;
}

Deno.test("P2cBalancer: the first latency sample is taken as is, later ones decay with exp(-dt/10s)", () => {
  const clock = manualClock();
  const balancer = new P2cBalancer<string>({ clock });
  balancer.update(nodes("a"));
  run(balancer, clock, 40);
  assert.equal(balancer.stats()[0]!.lag, 40);
  clock.advance(4900); // 5 s after the previous completion in total, with the next call's 100 ms
  run(balancer, clock, 100);
  const w = Math.exp(-5000 / DECAY_MS);
  assert.ok(Math.abs(balancer.stats()[0]!.lag - (40 * w + 100 * (1 - w))) < 1e-9);
  assert.equal(balancer.stats()[0]!.success, 1000);
});

Deno.test("P2cBalancer: of two nodes the lower load wins: load = sqrt(lag + 1) * (inflight + 1)", () => {
  const clock = manualClock();
  const balancer = new P2cBalancer<string>({ clock });
  balancer.update(nodes("slow", "fast"));
  // Teach it the latencies: slow 99 ms (load 10), fast 3 ms (load 2).
  const slow = balancer.pick()!; // equal loads: the first wins
  assert.equal(slow.id, "slow");
  clock.advance(99);
  slow.done();
  const fast = balancer.pick()!;
  assert.equal(fast.id, "fast");
  clock.advance(3);
  fast.done();
  const stats = Object.fromEntries(balancer.stats().map((s) => [s.id, s]));
  assert.equal(stats.slow!.load, 10);
  assert.equal(stats.fast!.load, 2);
  // In-flight calls raise the load: fast stays preferred until it has 5 in flight (load 10, tie).
  const held = [];
  for (let i = 0; i < 4; i++) {
    const picked = balancer.pick()!;
    assert.equal(picked.id, "fast");
    held.push(picked);
  }
  assert.equal(balancer.stats().find((s) => s.id === "fast")!.load, 10);
  held.push(balancer.pick()!); // a tie goes to the first node of the pair: slow
  assert.equal(held.at(-1)!.id, "slow");
  for (const picked of held) picked.done();
});

Deno.test("P2cBalancer: a node not picked for over 1 s is picked even when it is the loser", () => {
  const clock = manualClock();
  const balancer = new P2cBalancer<string>({ clock });
  balancer.update(nodes("slow", "fast"));
  run(balancer, clock, 400); // slow: lag 400
  run(balancer, clock, 1); // fast: lag 1
  // For the next second fast wins every time.
  for (let i = 0; i < 10; i++) assert.equal(run(balancer, clock, 50), "fast");
  clock.advance(1000);
  assert.equal(run(balancer, clock, 1), "slow");
  assert.equal(run(balancer, clock, 1), "fast");
});

Deno.test("P2cBalancer: failures drag the success EWMA down and unhealthy nodes are avoided", () => {
  const clock = manualClock();
  // Pairs are drawn from the scripted random values: (a,b) first, then (b,c).
  const balancer = new P2cBalancer<string>({ clock, random: scripted([0, 0, 0.5, 0.5]) });
  balancer.update(nodes("a", "b", "c"));
  // Make "a" fail repeatedly (it is the only node for a moment).
  balancer.update(nodes("a"));
  run(balancer, clock, 5);
  for (let i = 0; i < 20; i++) {
    clock.advance(5000);
    run(balancer, clock, 5, new AppError("UNAVAILABLE", "down"));
  }
  const a = balancer.stats()[0]!;
  assert.ok(a.success < 500 && !a.healthy, `success ${a.success}`);
  balancer.update(nodes("a", "b", "c"));
  assert.equal(balancer.stats()[0]!.success, a.success); // kept across updates
  // The first draw (a, b) has an unhealthy node, so it draws again: (b, c).
  const picked = balancer.pick()!;
  assert.notEqual(picked.id, "a");
  picked.done();
});

Deno.test("P2cBalancer: application errors do not count as node failures", () => {
  assert.equal(isNodeFailure(new AppError("NOT_FOUND", "x")), false);
  assert.equal(isNodeFailure({ code: 5 }), false);
  assert.equal(isNodeFailure({ code: 14 }), true);
  assert.equal(isNodeFailure(new AppError("DEADLINE_EXCEEDED", "x")), true);
  assert.equal(isNodeFailure(new TypeError("boom")), true);
});

Deno.test("balancedCall() retries an idempotent call on another node, never a non-idempotent one", async () => {
  const balancer = new P2cBalancer<string>({ random: scripted([0, 0]) });
  balancer.update(nodes("a", "b"));
  const tried: string[] = [];
  const result = await balancedCall(balancer, (node) => {
    tried.push(node);
    if (tried.length === 1) return Promise.reject(new AppError("UNAVAILABLE", "gone"));
    return Promise.resolve(`ok from ${node}`);
  }, { idempotent: true });
  assert.equal(tried.length, 2);
  assert.notEqual(tried[0], tried[1]);
  assert.equal(result, `ok from ${tried[1]}`);

  tried.length = 0;
  await assert.rejects(
    balancedCall(balancer, (node) => {
      tried.push(node);
      return Promise.reject(new AppError("UNAVAILABLE", "gone"));
    }, { idempotent: false }),
    (e) => e instanceof AppError && e.status === "UNAVAILABLE",
  );
  assert.equal(tried.length, 1);
  // Domain errors are answers, not node failures: no retry.
  tried.length = 0;
  await assert.rejects(
    balancedCall(balancer, (node) => {
      tried.push(node);
      return Promise.reject(new AppError("NOT_FOUND", "no such doc"));
    }, { idempotent: true }),
  );
  assert.equal(tried.length, 1);
  const empty = new P2cBalancer<string>();
  await assert.rejects(
    balancedCall(empty, () => Promise.resolve(1), { idempotent: true }),
    (e) => e instanceof AppError && e.status === "UNAVAILABLE",
  );
});
