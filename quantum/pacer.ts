/**
 * Token-bucket pacer: packets leave at the congestion controller's pacing rate with small bursts,
 * instead of a whole window at once.
 *
 * Tokens (bytes) accrue at `rate` up to the bucket size; sending spends them. The bucket size is
 * `max(burstBytes, rate × burstMs)`, so at high rates one wake-up of the sender (timers fire
 * with ~1 ms granularity) can send a batch that keeps the link busy until the next wake-up. A
 * sender loop asks {@linkcode Pacer.nextSendTime} once, sleeps until then, and sends while
 * {@linkcode Pacer.canSend} allows — one timer per batch, not per packet.
 *
 * The pacer is a pure state machine: it never reads a clock; every call takes `now` (ms).
 *
 * @example
 * ```ts
 * const pacer = new Pacer({ now: 0, burstBytes: 2400 });
 * pacer.setRate(1_200_000); // 1.2 MB/s = 1200 bytes per ms
 * pacer.canSend(0, 1200); // true (the bucket starts full)
 * pacer.onSent(0, 1200);
 * pacer.onSent(0, 1200);
 * pacer.canSend(0, 1200); // false
 * pacer.nextSendTime(0, 1200); // 1 (ms)
 * ```
 * @module
 */

const TOLERANCE_BYTES = 1e-3;

/** Options for {@linkcode Pacer}. */
export interface PacerOptions {
  /** Current time (ms). */
  now: number;
  /** Minimum bucket size in bytes (the largest burst), e.g. 2–10 packets. */
  burstBytes: number;
  /**
   * The bucket also holds at least `rate × burstMs / 1000` bytes, so batches sent per timer
   * wake-up keep up with high rates (default 1 ms; 0 disables).
   */
  burstMs?: number;
  /** Initial rate in bytes per second (default Infinity: unpaced). */
  rate?: number;
}

/** Token-bucket pacer. See the module documentation. */
export class Pacer {
  #rate: number;
  #burstBytes: number;
  #burstMs: number;
  #tokens: number;
  #last: number;

  /** Creates a pacer with a full bucket. */
  constructor(options: PacerOptions) {
    const { now, burstBytes, burstMs = 1, rate = Infinity } = options;
    if (!Number.isFinite(now)) throw new RangeError("Cannot create pacer: now must be finite");
    if (!(burstBytes > 0) || !Number.isFinite(burstBytes)) {
      throw new RangeError("Cannot create pacer: burstBytes must be positive and finite");
    }
    if (!(burstMs >= 0) || !Number.isFinite(burstMs)) {
      throw new RangeError("Cannot create pacer: burstMs must be non-negative and finite");
    }
    this.#burstBytes = burstBytes;
    this.#burstMs = burstMs;
    this.#rate = Pacer.#checkRate(rate);
    this.#last = now;
    this.#tokens = this.capacity;
  }

  static #checkRate(rate: number): number {
    if (!(rate > 0)) throw new RangeError("Cannot set pacing rate: rate must be positive");
    return rate;
  }

  /** Current rate in bytes per second (Infinity = unpaced). */
  get rate(): number {
    return this.#rate;
  }

  /** Bucket size in bytes at the current rate. */
  get capacity(): number {
    if (this.#rate === Infinity) return Infinity;
    return Math.max(this.#burstBytes, (this.#rate * this.#burstMs) / 1000);
  }

  /** Tokens (bytes) available at `now`. */
  available(now: number): number {
    this.#refill(now);
    return this.#tokens;
  }

  /**
   * Changes the rate. Pass `now` so the tokens accrued so far count at the old rate.
   *
   * @param bytesPerSecond positive; Infinity disables pacing
   * @throws {RangeError} when the rate is not positive
   */
  setRate(bytesPerSecond: number, now?: number): void {
    Pacer.#checkRate(bytesPerSecond);
    if (now !== undefined) this.#refill(now);
    this.#rate = bytesPerSecond;
    this.#tokens = Math.min(this.#tokens, this.capacity);
  }

  /** Whether `bytes` may be sent at `now`. */
  canSend(now: number, bytes: number): boolean {
    if (this.#rate === Infinity) return true;
    this.#refill(now);
    // A packet larger than the bucket may go once the bucket is full. The small tolerance makes
    // canSend(nextSendTime(now, b), b) hold despite floating-point rounding.
    return this.#tokens >= Math.min(bytes, this.capacity) - TOLERANCE_BYTES;
  }

  /** Spends tokens for a sent packet; the bucket may go into debt if the caller sent early. */
  onSent(now: number, bytes: number): void {
    if (this.#rate === Infinity) return;
    this.#refill(now);
    this.#tokens -= bytes;
  }

  /**
   * Earliest time (ms, ≥ `now`) at which `bytes` may be sent. A sender sleeps until then and
   * sends a batch while {@linkcode Pacer.canSend} holds.
   */
  nextSendTime(now: number, bytes: number): number {
    if (this.#rate === Infinity) return now;
    this.#refill(now);
    const missing = Math.min(bytes, this.capacity) - this.#tokens;
    if (missing <= 0) return now;
    return now + (missing * 1000) / this.#rate;
  }

  #refill(now: number): void {
    if (now <= this.#last) return; // time never runs backwards for the bucket
    if (this.#rate !== Infinity) {
      this.#tokens = Math.min(
        this.capacity,
        this.#tokens + ((now - this.#last) * this.#rate) / 1000,
      );
    }
    this.#last = now;
  }
}
