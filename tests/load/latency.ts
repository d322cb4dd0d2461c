/**
 * Bounded-memory latency histogram for load runs: logarithmic buckets 1% wide from 1 µs to
 * ~10 min, exact count/min/max/mean. Percentiles are the upper edge of the bucket holding
 * the rank (clamped to the exact max), so they over-report by at most 1%.
 *
 * @example
 * ```ts
 * const h = new LatencyHistogram();
 * h.record(1.25);
 * h.summary().p99; // ≈ 1.25 (ms)
 * ```
 * @module
 */

const MIN_MS = 0.001;
const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);
const BUCKETS = Math.ceil(Math.log(600_000 / MIN_MS) / LOG_GROWTH) + 1;

/** Summary of a histogram, in milliseconds. */
export interface LatencySummary {
  count: number;
  min: number;
  avg: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** A latency histogram in milliseconds. */
export class LatencyHistogram {
  #counts = new Uint32Array(BUCKETS);
  #count = 0;
  #sum = 0;
  #min = Infinity;
  #max = -Infinity;

  /** Number of samples. */
  get count(): number {
    return this.#count;
  }

  /**
   * Record one sample in ms.
   * @throws {RangeError} for a negative or non-finite sample
   */
  record(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) throw new RangeError(`Invalid latency sample: ${ms}`);
    this.#counts[bucketOf(ms)]!++;
    this.#count++;
    this.#sum += ms;
    if (ms < this.#min) this.#min = ms;
    if (ms > this.#max) this.#max = ms;
  }

  /** Add every sample of `other`. */
  merge(other: LatencyHistogram): void {
    for (let i = 0; i < BUCKETS; i++) this.#counts[i]! += other.#counts[i]!;
    this.#count += other.#count;
    this.#sum += other.#sum;
    this.#min = Math.min(this.#min, other.#min);
    this.#max = Math.max(this.#max, other.#max);
  }

  /**
   * The value at quantile `q` (0..1), NaN when empty.
   * @throws {RangeError} when q is outside [0, 1]
   */
  quantile(q: number): number {
    if (!(q >= 0 && q <= 1)) throw new RangeError(`Quantile must be in [0, 1], got ${q}`);
    if (this.#count === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.#count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.#counts[i]!;
      if (seen >= rank) return Math.max(this.#min, Math.min(this.#max, upperEdge(i)));
    }
    return this.#max;
  }

  /** count, min, avg, p50, p95, p99, max (NaN fields when empty). */
  summary(): LatencySummary {
    const empty = this.#count === 0;
    return {
      count: this.#count,
      min: empty ? NaN : this.#min,
      avg: empty ? NaN : this.#sum / this.#count,
      p50: this.quantile(0.5),
      p95: this.quantile(0.95),
      p99: this.quantile(0.99),
      max: empty ? NaN : this.#max,
    };
  }
}

function bucketOf(ms: number): number {
  if (ms <= MIN_MS) return 0;
  return Math.min(BUCKETS - 1, Math.ceil(Math.log(ms / MIN_MS) / LOG_GROWTH));
}

function upperEdge(index: number): number {
  return MIN_MS * GROWTH ** index;
}
