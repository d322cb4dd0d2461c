/**
 * The sleeping half of {@linkcode PreciseTimer} (`_precise_timer.ts`): waits on a shared
 * futex until the armed deadline and then posts the generation that fired.
 *
 * Shared layout: Int32 [0] = generation (bumped on every arm / cancel; −1 = stop),
 * Float64 [1] = deadline in epoch ms (`timeOrigin + now()`), 0 = none.
 * @module
 */
/// <reference lib="deno.worker" />

self.onmessage = (event: MessageEvent<SharedArrayBuffer>) => {
  const control = new Int32Array(event.data, 0, 2);
  const deadline = new Float64Array(event.data, 8, 1);
  const now = () => performance.timeOrigin + performance.now();
  while (true) {
    const generation = Atomics.load(control, 0);
    if (generation < 0) break;
    const at = deadline[0]!;
    if (at === 0) {
      Atomics.wait(control, 0, generation); // nothing armed: sleep until re-armed
      continue;
    }
    const wait = at - now();
    if (wait > 0) {
      Atomics.wait(control, 0, generation, wait);
      continue; // re-armed, cancelled or due: look again
    }
    self.postMessage(generation);
    Atomics.wait(control, 0, generation); // fired once: sleep until re-armed
  }
  self.close();
};
