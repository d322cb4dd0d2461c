/**
 * Clocks for Quantum's protocol logic: the real monotonic clock and a virtual clock that
 * either runs timers as soon as the program is otherwise idle (auto mode, for fast
 * simulations) or only when a test calls `advance` (manual mode).
 *
 * @example
 * ```ts
 * const clock = new VirtualClock({ auto: false });
 * clock.setTimer(100, () => console.log("fired at", clock.now()));
 * await clock.advance(100); // prints "fired at 100"
 * ```
 * @module
 */
import { setImmediate } from "node:timers";

/** A cancellable timer. */
export interface Timer {
  /** Cancel the timer; a no-op when it already fired. */
  cancel(): void;
}

/** Time source and timer service, in milliseconds. */
export interface Clock {
  /** Monotonic time in ms. */
  now(): number;
  /** Run `callback` after `delayMs` (≥ 0). */
  setTimer(delayMs: number, callback: () => void): Timer;
  /**
   * Run `callback` once the current macrotask's promise work has settled, without advancing
   * time (used to coalesce many small writes made in one turn into full packets).
   */
  defer?(callback: () => void): void;
}

/** The real clock: `performance.now()` and `setTimeout`. */
export const realClock: Clock = {
  now: () => performance.now(),
  setTimer(delayMs, callback) {
    const handle = setTimeout(callback, Math.max(0, delayMs));
    return { cancel: () => clearTimeout(handle) };
  },
  defer(callback) {
    setImmediate(callback);
  },
};

interface Entry {
  at: number;
  order: number;
  callback: () => void;
  cancelled: boolean;
}

/** Options for {@linkcode VirtualClock}. */
export interface VirtualClockOptions {
  /** Advance to the next timer whenever the event loop is otherwise idle (default true). */
  auto?: boolean;
  /** Start time in ms (default 0). */
  start?: number;
}

/**
 * A deterministic clock. Time only moves when timers run: in auto mode it jumps to the next
 * timer after every macrotask turn (so all promise work settles between events); in manual
 * mode only {@linkcode VirtualClock.advance} moves it.
 */
export class VirtualClock implements Clock {
  #now: number;
  #heap: Entry[] = [];
  #order = 0;
  #auto: boolean;
  #scheduled = false;

  /** A clock at `options.start` (default 0), auto-advancing unless `auto: false`. */
  constructor(options: VirtualClockOptions = {}) {
    this.#now = options.start ?? 0;
    this.#auto = options.auto ?? true;
  }

  /** Current virtual time in ms. */
  now(): number {
    return this.#now;
  }

  /** Number of pending (not cancelled) timers. */
  get pendingTimers(): number {
    return this.#heap.filter((e) => !e.cancelled).length;
  }

  /** Schedule `callback` at now + `delayMs`. */
  setTimer(delayMs: number, callback: () => void): Timer {
    if (!(delayMs >= 0)) delayMs = 0;
    const entry: Entry = {
      at: this.#now + delayMs,
      order: this.#order++,
      callback,
      cancelled: false,
    };
    this.#push(entry);
    if (this.#auto) this.#schedule();
    return {
      cancel: () => {
        entry.cancelled = true;
      },
    };
  }

  /** Run `callback` at the current instant, after pending promise work. */
  defer(callback: () => void): void {
    this.setTimer(0, callback);
  }

  /**
   * Run every timer due within `ms`, in time order, letting promise work settle (one
   * macrotask turn) before each, then set the time to now + `ms`.
   */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    while (true) {
      await macrotask();
      const next = this.#peek();
      if (!next || next.at > target) break;
      this.#runNext();
    }
    this.#now = Math.max(this.#now, target);
    await macrotask();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      if (!this.#peek()) return;
      this.#runNext();
      if (this.#peek()) this.#schedule();
    });
  }

  #runNext(): void {
    const entry = this.#pop();
    if (!entry) return;
    this.#now = Math.max(this.#now, entry.at);
    // Run every timer due at this same instant in this turn.
    const due = [entry];
    while (true) {
      const next = this.#peek();
      if (!next || next.at > this.#now) break;
      due.push(this.#pop()!);
    }
    for (const e of due) {
      if (!e.cancelled) {
        e.cancelled = true;
        e.callback();
      }
    }
  }

  #peek(): Entry | undefined {
    while (this.#heap.length > 0 && this.#heap[0]!.cancelled) this.#pop();
    return this.#heap[0];
  }

  #push(entry: Entry): void {
    const heap = this.#heap;
    heap.push(entry);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  #pop(): Entry | undefined {
    const heap = this.#heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0 && last) {
      heap[0] = last;
      let i = 0;
      while (true) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && before(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && before(heap[r]!, heap[m]!)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    }
    return top;
  }
}

function before(a: Entry, b: Entry): boolean {
  return a.at < b.at || (a.at === b.at && a.order < b.order);
}

/** Resolve after one macrotask turn (all queued promise work has run). */
export function macrotask(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
