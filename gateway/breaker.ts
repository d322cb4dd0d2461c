/**
 * Adaptive circuit breaker after go-zero's googleBreaker (Google SRE client-side
 * throttling): a 10 s window of 40 buckets counts requests and successes;
 * `dropRatio = (total - protection - w·accepts) / (total + 1)` with `w` lowered from
 * k = 1.5 toward 1.1 as consecutive failing buckets grow; requests are rejected with that
 * probability (scaled down while recent buckets work), and one is forced through when none
 * passed for 1 s. Time comes from an injected clock; randomness is injectable too.
 *
 * @example
 * ```ts
 * const breaker = new Breaker("statesync/GetDocument");
 * if (!breaker.allow()) throw new AppError("UNAVAILABLE", "Circuit open");
 * try { await call(); breaker.markSuccess(); } catch (e) { breaker.markFailure(); throw e; }
 * ```
 * @module
 */
import { AppError, StatusCode } from "../kernel/mod.ts";

/** A clock in ms (monotonic in production). */
export interface Clock {
  now(): number;
}

/** Breaker parameters (go-zero's defaults). */
export interface BreakerOptions {
  clock?: Clock;
  /** Uniform random in [0, 1) (default Math.random). */
  random?: () => number;
  windowMs?: number;
  buckets?: number;
  k?: number;
  minK?: number;
  protection?: number;
  forcePassMs?: number;
}

/** A snapshot of a breaker for /breaker/stats. */
export interface BreakerStats {
  name: string;
  /** "closed": nothing dropped; "open": dropping a share of calls. */
  state: "closed" | "open";
  /** Current drop probability before the working-bucket scaling. */
  dropRatio: number;
  /** Requests and successes in the window. */
  total: number;
  accepts: number;
  /** Calls rejected by the breaker since start (or reset). */
  rejected: number;
  failingBuckets: number;
  workingBuckets: number;
}

/** gRPC codes counted as failures (the backend is unhealthy), as go-zero's codes list. */
const FAILURE_CODES: ReadonlySet<number> = new Set([
  StatusCode.DEADLINE_EXCEEDED,
  StatusCode.INTERNAL,
  StatusCode.UNAVAILABLE,
  StatusCode.DATA_LOSS,
  StatusCode.UNIMPLEMENTED,
  StatusCode.RESOURCE_EXHAUSTED,
]);

/** True when a gRPC status code counts as a breaker failure. */
export function isBreakerFailure(code: number): boolean {
  return FAILURE_CODES.has(code);
}

interface Histogram {
  accepts: number;
  total: number;
  failingBuckets: number;
  workingBuckets: number;
}

/** One adaptive breaker (see the module doc). */
export class Breaker {
  readonly name: string;
  #clock: Clock;
  #random: () => number;
  #bucketMs: number;
  #buckets: number;
  #k: number;
  #minK: number;
  #protection: number;
  #forcePassMs: number;
  /** Per bucket: [successes, requests]; ring indexed by absolute bucket number. */
  #success: Float64Array;
  #count: Float64Array;
  #lastBucket = -1;
  #lastPass = -Infinity;
  #rejected = 0;

  constructor(name: string, options: BreakerOptions = {}) {
    this.name = name;
    this.#clock = options.clock ?? { now: () => performance.now() };
    this.#random = options.random ?? Math.random;
    this.#buckets = options.buckets ?? 40;
    this.#bucketMs = (options.windowMs ?? 10_000) / this.#buckets;
    this.#k = options.k ?? 1.5;
    this.#minK = options.minK ?? 1.1;
    this.#protection = options.protection ?? 5;
    this.#forcePassMs = options.forcePassMs ?? 1_000;
    this.#success = new Float64Array(this.#buckets);
    this.#count = new Float64Array(this.#buckets);
  }

  /** The drop probability the formula gives for the current window. */
  dropRatio(): number {
    const h = this.#history();
    return this.#ratio(h);
  }

  /** Decide whether a call may go out now; false means reject it (fail fast). */
  allow(): boolean {
    const h = this.#history();
    let ratio = this.#ratio(h);
    if (ratio <= 0) return true;
    const now = this.#clock.now();
    if (now - this.#lastPass > this.#forcePassMs) {
      this.#lastPass = now;
      return true;
    }
    ratio *= (this.#buckets - h.workingBuckets) / this.#buckets;
    if (this.#random() < ratio) {
      this.#rejected++;
      return false;
    }
    this.#lastPass = now;
    return true;
  }

  /** Record a successful call. */
  markSuccess(): void {
    this.#add(1);
  }

  /** Record a failed call. */
  markFailure(): void {
    this.#add(0);
  }

  /** Record the outcome of a call that ended with gRPC status `code` (0 = OK). */
  markCode(code: number): void {
    if (isBreakerFailure(code)) this.markFailure();
    else this.markSuccess();
  }

  /** Forget the window (used by /breaker/reset). */
  reset(): void {
    this.#success.fill(0);
    this.#count.fill(0);
    this.#rejected = 0;
    this.#lastPass = -Infinity;
  }

  /** A snapshot for /breaker/stats. */
  stats(): BreakerStats {
    const h = this.#history();
    const ratio = this.#ratio(h);
    return {
      name: this.name,
      state: ratio > 0 ? "open" : "closed",
      dropRatio: Math.max(0, Math.round(ratio * 1000) / 1000),
      total: h.total,
      accepts: h.accepts,
      rejected: this.#rejected,
      failingBuckets: h.failingBuckets,
      workingBuckets: h.workingBuckets,
    };
  }

  #ratio(h: Histogram): number {
    const w = Math.max(
      this.#minK,
      this.#k - (this.#k - this.#minK) * h.failingBuckets / this.#buckets,
    );
    return (h.total - this.#protection - w * h.accepts) / (h.total + 1);
  }

  #advance(): number {
    const bucket = Math.floor(this.#clock.now() / this.#bucketMs);
    if (this.#lastBucket < 0) this.#lastBucket = bucket;
    const steps = Math.min(bucket - this.#lastBucket, this.#buckets);
    for (let i = 1; i <= steps; i++) {
      const slot = (this.#lastBucket + i) % this.#buckets;
      this.#success[slot] = 0;
      this.#count[slot] = 0;
    }
    if (bucket > this.#lastBucket) this.#lastBucket = bucket;
    return bucket;
  }

  #add(success: number): void {
    const slot = this.#advance() % this.#buckets;
    this.#success[slot]! += success;
    this.#count[slot]! += 1;
  }

  #history(): Histogram {
    const current = this.#advance();
    const h: Histogram = { accepts: 0, total: 0, failingBuckets: 0, workingBuckets: 0 };
    // Oldest to newest, so the streak counters describe the most recent buckets.
    for (let i = this.#buckets - 1; i >= 0; i--) {
      const slot = (current - i) % this.#buckets;
      if (current - i < 0) continue;
      const success = this.#success[slot]!;
      const count = this.#count[slot]!;
      h.accepts += success;
      h.total += count;
      if (count > 0 && success === 0) {
        h.failingBuckets++;
        h.workingBuckets = 0;
      } else if (count > 0 && success === count) {
        h.workingBuckets++;
        h.failingBuckets = 0;
      } else if (count > 0) {
        h.failingBuckets = 0;
        h.workingBuckets = 0;
      }
    }
    return h;
  }
}

/** Breakers by name, created on first use. */
export class BreakerRegistry {
  #options: BreakerOptions;
  #breakers = new Map<string, Breaker>();

  constructor(options: BreakerOptions = {}) {
    this.#options = options;
  }

  /** The breaker for `name` (e.g. "statesync/GetDocument"). */
  get(name: string): Breaker {
    let breaker = this.#breakers.get(name);
    if (breaker === undefined) {
      breaker = new Breaker(name, this.#options);
      this.#breakers.set(name, breaker);
    }
    return breaker;
  }

  /** Snapshots of every breaker, by name. */
  stats(): BreakerStats[] {
    return [...this.#breakers.values()].map((b) => b.stats()).sort((a, b) =>
      a.name.localeCompare(b.name)
    );
  }

  /** Reset one breaker, or all when `name` is omitted; returns how many were reset. */
  reset(name?: string): number {
    if (name === undefined) {
      for (const breaker of this.#breakers.values()) breaker.reset();
      return this.#breakers.size;
    }
    const breaker = this.#breakers.get(name);
    breaker?.reset();
    return breaker ? 1 : 0;
  }

  /**
   * Run `call` through the named breaker: rejected calls fail fast with UNAVAILABLE, and the
   * outcome's gRPC code is recorded.
   * @throws {AppError} UNAVAILABLE when the breaker rejects; otherwise whatever `call` throws
   */
  async run<T>(name: string, call: () => Promise<T>): Promise<T> {
    const breaker = this.get(name);
    if (!breaker.allow()) {
      throw new AppError("UNAVAILABLE", `Circuit breaker open for ${name}`, {
        details: { breaker: name },
      });
    }
    try {
      const result = await call();
      breaker.markSuccess();
      return result;
    } catch (error) {
      breaker.markCode(AppError.from(error).code);
      throw error;
    }
  }
}
