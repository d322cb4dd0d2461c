/**
 * Time for the realtime managers: a clock (epoch ms) and one-shot timers, both injectable
 * so lock and presence expiry run deterministically in tests with {@link ManualClock}.
 * @module
 */

/** Reads the current time in Unix epoch milliseconds. */
export interface Clock {
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

/** The wall clock. */
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

  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  set(fn: () => void, delayMs: number): TimerHandle {
    const handle = this.#next++;
    this.#timers.set(handle, { at: this.#now + Math.max(0, delayMs), fn });
    return handle;
  }

  clear(handle: TimerHandle): void {
    this.#timers.delete(handle);
  }

  /** Number of timers not yet fired. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Move time forward by `ms`, firing every timer that falls due, earliest first. */
  advance(ms: number): void {
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
