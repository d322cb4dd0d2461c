/**
 * Reconnect delays: capped exponential backoff with full jitter (AWS Architecture Blog,
 * "Exponential Backoff And Jitter"): `random(0, min(cap, base * 2^attempt))`, so clients
 * that lost the same gateway at the same moment spread their reconnects instead of
 * arriving together.
 *
 * @example
 * ```ts
 * import { backoffDelay } from "./backoff.ts";
 * backoffDelay(3, { baseMs: 250, maxMs: 10_000, random: () => 0.5 }); // 1000
 * ```
 * @module
 */

/** Backoff settings. */
export interface BackoffOptions {
  /** Delay ceiling of the first retry (attempt 0), in ms. */
  baseMs: number;
  /** Cap of the delay ceiling, in ms. */
  maxMs: number;
  /** Uniform random number in [0, 1) (default Math.random). */
  random?: () => number;
}

/** Defaults: 250 ms doubling up to 10 s. */
export const DEFAULT_BACKOFF: Readonly<Required<Omit<BackoffOptions, "random">>> = {
  baseMs: 250,
  maxMs: 10_000,
};

/**
 * The delay before retry number `attempt` (0-based): uniform in
 * `[0, min(maxMs, baseMs * 2^attempt))`.
 * @throws {RangeError} for a negative or non-integer attempt, or bad bounds
 */
export function backoffDelay(attempt: number, options: BackoffOptions): number {
  if (!Number.isInteger(attempt) || attempt < 0) {
    throw new RangeError(`Invalid attempt: expected an integer >= 0, got ${attempt}`);
  }
  if (!(options.baseMs > 0) || !(options.maxMs >= options.baseMs)) {
    throw new RangeError("Invalid backoff bounds: expected 0 < baseMs <= maxMs");
  }
  const ceiling = Math.min(options.maxMs, options.baseMs * 2 ** Math.min(attempt, 52));
  const random = (options.random ?? Math.random)();
  return Math.floor(ceiling * Math.min(Math.max(random, 0), 0.999999));
}
