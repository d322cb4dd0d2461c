/**
 * A single re-armable timer with sub-millisecond precision, for the impairment relay's delay
 * line. Deno's `setTimeout` has 1 ms resolution and fires no sooner than ~2 ms, so a relay
 * timed by it delivers most datagrams 1–2 ms late — link jitter that a real path does not have.
 * Here a worker sleeps on a futex (`Atomics.wait`, microsecond timeouts) and posts a message at
 * the deadline. Falls back to `setTimeout` where workers or shared memory are unavailable.
 *
 * @example
 * ```ts
 * const timer = new PreciseTimer(() => console.log("due"));
 * timer.arm(performance.now() + 2.5);
 * timer.close();
 * ```
 * @module
 */

/** A one-shot timer that can be re-armed; at most one deadline at a time. */
export class PreciseTimer {
  readonly #callback: () => void;
  #worker: Worker | undefined;
  #control: Int32Array | undefined;
  #deadline: Float64Array | undefined;
  #fallback: ReturnType<typeof setTimeout> | undefined;
  #armed = false;

  /** A timer that calls `callback` when an armed deadline passes. */
  constructor(callback: () => void) {
    this.#callback = callback;
    try {
      const shared = new SharedArrayBuffer(16);
      this.#control = new Int32Array(shared, 0, 2);
      this.#deadline = new Float64Array(shared, 8, 1);
      const worker = new Worker(new URL("./_precise_timer_worker.ts", import.meta.url), {
        type: "module",
      });
      worker.onmessage = (event: MessageEvent<number>) => {
        // A message for an older generation lost a race with arm() / cancel(): ignore it.
        if (!this.#armed || event.data !== Atomics.load(this.#control!, 0)) return;
        this.#armed = false;
        this.#callback();
      };
      worker.postMessage(shared);
      this.#worker = worker;
    } catch {
      this.#worker = undefined; // no workers or shared memory here: use setTimeout
    }
  }

  /** Fire at `at` (a `performance.now()` time); replaces any earlier deadline. */
  arm(at: number): void {
    this.#armed = true;
    if (!this.#worker) {
      if (this.#fallback !== undefined) clearTimeout(this.#fallback);
      this.#fallback = setTimeout(() => {
        this.#fallback = undefined;
        this.#armed = false;
        this.#callback();
      }, Math.max(0, Math.ceil(at - performance.now()))); // 1 ms timers: never early
      return;
    }
    this.#deadline![0] = performance.timeOrigin + at;
    Atomics.add(this.#control!, 0, 1);
    Atomics.notify(this.#control!, 0);
  }

  /** Disarm (the callback will not run for the current deadline). */
  cancel(): void {
    this.#armed = false;
    if (this.#fallback !== undefined) clearTimeout(this.#fallback);
    this.#fallback = undefined;
    if (!this.#worker) return;
    this.#deadline![0] = 0;
    Atomics.add(this.#control!, 0, 1);
    Atomics.notify(this.#control!, 0);
  }

  /** Stop the timer and its worker. Idempotent. */
  close(): void {
    this.cancel();
    const worker = this.#worker;
    if (!worker) return;
    this.#worker = undefined;
    Atomics.store(this.#control!, 0, -1);
    Atomics.notify(this.#control!, 0);
    worker.terminate();
  }
}
