/**
 * Injectable time for state machines that work in epoch milliseconds (session expiry, lock
 * and presence TTLs, event timestamps): a {@link Clock}, one-shot {@link Timers}, their
 * system implementations, and a {@link ManualClock} for deterministic tests. Epoch time is
 * used because these values are stored and compared across processes and restarts; protocol
 * code that needs monotonic time (Quantum) has its own clock.
 *
 * @example
 * ```ts
 * const clock = new ManualClock(1_700_000_000_000);
 * clock.set(() => console.log("fired at", clock.now()), 500);
 * clock.advance(30_000); // fires the timer at 1_700_000_000_500
 * clock.now(); // 1_700_000_030_000
 * ```
 * @module
 */

/** A source of the current time in Unix epoch milliseconds. */
export interface Clock {
  /** Current time, epoch ms. */
  now(): number;
}

/** An opaque handle of a scheduled timer. */
export type TimerHandle = number;

/** One-shot timers. */
export interface Timers {
  /** Run `fn` once after `delayMs`; returns a handle for {@link Timers.clear}. */
  set(fn: () => void, delayMs: number): TimerHandle;
  /** Cancel a timer (no-op when it already ran). */
  clear(handle: TimerHandle): void;
}

/** The system wall clock (`Date.now()`). */
export const systemClock: Clock = { now: () => Date.now() };

/** Real timers that do not keep the process alive on their own. */
export const systemTimers: Timers = {
  set(fn, delayMs) {
    // Deno's setTimeout returns a number (node typings, pulled in by grpc-js, say otherwise).
    const id = setTimeout(fn, Math.max(0, delayMs)) as unknown as number;
    Deno.unrefTimer(id);
    return id;
  },
  clear(handle) {
    clearTimeout(handle);
  },
};

/** A clock and timers driven by hand: {@link ManualClock.advance} fires due timers in order. */
export class ManualClock implements Clock, Timers {
  #now: number;
  #next = 1;
  #timers = new Map<TimerHandle, { at: number; fn: () => void }>();

  /** Start at `start` epoch ms (default 1_700_000_000_000, a fixed instant). */
  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }

  /** Current time, epoch ms. */
  now(): number {
    return this.#now;
  }

  /** Run `fn` once when the clock has been advanced by `delayMs`. */
  set(fn: () => void, delayMs: number): TimerHandle {
    const handle = this.#next++;
    this.#timers.set(handle, { at: this.#now + Math.max(0, delayMs), fn });
    return handle;
  }

  /** Cancel a timer (no-op when it already ran). */
  clear(handle: TimerHandle): void {
    this.#timers.delete(handle);
  }

  /** Number of timers not yet fired. */
  get pending(): number {
    return this.#timers.size;
  }

  /**
   * Move time forward by `ms`, firing every timer that falls due, earliest first.
   * @throws {RangeError} when `ms` is negative or not finite
   */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) {
      throw new RangeError("Cannot advance clock: ms must be >= 0");
    }
    const target = this.#now + ms;
    for (;;) {
      let due: [TimerHandle, { at: number; fn: () => void }] | undefined;
      for (const entry of this.#timers) {
        if (entry[1].at <= target && (due === undefined || entry[1].at < due[1].at)) due = entry;
      }
      if (due === undefined) break;
      this.#timers.delete(due[0]);
      this.#now = Math.max(this.#now, due[1].at);
      due[1].fn();
    }
    this.#now = target;
  }
}
