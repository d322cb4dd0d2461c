/**
 * Wall-clock time for session expiry. Session times are epoch milliseconds because they are
 * stored and compared across processes and restarts, so production uses `Date.now()` here (in
 * one place) and tests drive a {@link ManualClock}.
 *
 * @example
 * ```ts
 * const clock = new ManualClock(1_700_000_000_000);
 * clock.advance(30_000);
 * clock.now(); // 1_700_000_030_000
 * ```
 * @module
 */

/** A source of the current time in epoch milliseconds. */
export interface Clock {
  /** Current time, epoch ms. */
  now(): number;
}

/** The system wall clock. */
export const systemClock: Clock = { now: () => Date.now() };

/** A clock that only moves when told to (for tests). */
export class ManualClock implements Clock {
  #now: number;

  /** Start at `start` epoch ms (default: the current wall-clock time). */
  constructor(start: number = Date.now()) {
    this.#now = start;
  }

  /** Current time, epoch ms. */
  now(): number {
    return this.#now;
  }

  /**
   * Move forward by `ms`.
   * @throws {RangeError} when `ms` is negative or not finite
   */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) {
      throw new RangeError("Cannot advance clock: ms must be >= 0");
    }
    this.#now += ms;
  }
}
