/** The relay's sub-millisecond timer (`_precise_timer.ts`). */
import assert from "node:assert/strict";
import { PreciseTimer } from "./_precise_timer.ts";

function firing(): { timer: PreciseTimer; fired: Promise<number>; count: () => number } {
  let count = 0;
  let resolve!: (at: number) => void;
  const fired = new Promise<number>((r) => (resolve = r));
  const timer = new PreciseTimer(() => {
    count++;
    resolve(performance.now());
  });
  return { timer, fired, count: () => count };
}

Deno.test("a precise timer fires once, not before its deadline", async () => {
  const { timer, fired, count } = firing();
  try {
    const at = performance.now() + 2.5;
    timer.arm(at);
    assert.ok((await fired) >= at, "not early");
    assert.equal(count(), 1);
  } finally {
    timer.close();
  }
});

Deno.test("re-arming replaces the deadline; cancel stops it", async () => {
  const { timer, fired, count } = firing();
  try {
    timer.arm(performance.now() + 60_000);
    const at = performance.now() + 1.5;
    timer.arm(at); // earlier deadline replaces the first
    assert.ok((await fired) >= at);
    timer.arm(performance.now() + 1);
    timer.cancel();
    // A second timer armed after the cancelled deadline fires after it would have.
    const later = firing();
    try {
      later.timer.arm(performance.now() + 5);
      await later.fired;
    } finally {
      later.timer.close();
    }
    assert.equal(count(), 1, "the cancelled deadline did not fire");
  } finally {
    timer.close();
  }
});
