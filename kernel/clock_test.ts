import assert from "node:assert/strict";
import { ManualClock, systemClock, systemTimers } from "./clock.ts";

Deno.test("ManualClock moves only when advanced and fires due timers earliest first at their time", () => {
  const clock = new ManualClock(1_000);
  const fired: Array<[string, number]> = [];
  clock.set(() => fired.push(["late", clock.now()]), 300);
  const cancelled = clock.set(() => fired.push(["cancelled", clock.now()]), 50);
  clock.set(() => {
    fired.push(["early", clock.now()]);
    clock.set(() => fired.push(["chained", clock.now()]), 100); // due at 1_200, within reach
  }, 100);
  clock.clear(cancelled);
  assert.equal(clock.pending, 2);
  assert.equal(clock.now(), 1_000);
  clock.advance(250);
  assert.deepEqual(fired, [["early", 1_100], ["chained", 1_200]]);
  assert.equal(clock.now(), 1_250);
  clock.advance(50);
  assert.deepEqual(fired.at(-1), ["late", 1_300]);
  assert.equal(clock.pending, 0);
});

Deno.test("ManualClock.advance rejects negative and non-finite steps", () => {
  const clock = new ManualClock();
  assert.equal(clock.now(), 1_700_000_000_000);
  assert.throws(() => clock.advance(-1), RangeError);
  assert.throws(() => clock.advance(Number.NaN), RangeError);
  assert.equal(clock.now(), 1_700_000_000_000);
});

Deno.test("systemTimers run a callback once and clear() cancels one", async () => {
  const before = systemClock.now();
  const cancelled = systemTimers.set(() => assert.fail("cleared timer ran"), 0);
  systemTimers.clear(cancelled);
  const fired = Promise.withResolvers<number>();
  systemTimers.set(() => fired.resolve(systemClock.now()), 1);
  // systemTimers are unref'd: a referenced timer keeps the test's event loop alive meanwhile.
  const keepAlive = setTimeout(() => {}, 60_000);
  try {
    assert.ok(await fired.promise >= before);
  } finally {
    clearTimeout(keepAlive);
  }
});
