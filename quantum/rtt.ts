/**
 * RTT estimation and retransmission timeout per RFC 6298, with Karn's rule applied by the
 * caller (never pass samples from retransmitted packets) and a low minimum RTO.
 *
 * RTO = max(minRto, SRTT + max(G, 4·RTTVAR) + maxAckDelay), doubled on every expiry
 * (capped at maxRto) until an ACK of new data resets the backoff.
 *
 * @example
 * ```ts
 * const rtt = new RttEstimator();
 * rtt.addSample(10, 0); // first sample: SRTT 10, RTTVAR 5
 * rtt.rto(); // 10 + 20 + 5 = 35 ms
 * ```
 * @module
 */

/** Defaults: see PROTOCOL.md "Timers" for the reasoning. */
export const RTO_DEFAULTS = {
  /** Minimum RTO in ms (Linux 200, KCP 100/30, QUIC none). */
  minRto: 20,
  /** Maximum RTO in ms after backoff. */
  maxRto: 2_000,
  /** RTO before any sample (ms). */
  initialRto: 200,
  /** Clock granularity G (ms). */
  granularity: 1,
  /** Peer's maximum ACK delay (ms), added like QUIC's PTO. */
  maxAckDelay: 5,
} as const;

/** Options for {@linkcode RttEstimator}. */
export type RttOptions = Partial<{ -readonly [K in keyof typeof RTO_DEFAULTS]: number }>;

/** Smoothed RTT, variance, min RTT and the backed-off RTO. */
export class RttEstimator {
  #options: { -readonly [K in keyof typeof RTO_DEFAULTS]: number };
  #srtt = 0;
  #rttvar = 0;
  #latest = 0;
  #minRtt = Infinity;
  #hasSample = false;
  #backoff = 0;

  /** An estimator with {@linkcode RTO_DEFAULTS} overridden by `options`. */
  constructor(options: RttOptions = {}) {
    this.#options = { ...RTO_DEFAULTS, ...options };
  }

  /** Smoothed RTT in ms (0 before the first sample). */
  get srtt(): number {
    return this.#srtt;
  }
  /** RTT variance in ms. */
  get rttvar(): number {
    return this.#rttvar;
  }
  /** Latest sample in ms. */
  get latest(): number {
    return this.#latest;
  }
  /** Minimum sample seen in ms (Infinity before the first). */
  get minRtt(): number {
    return this.#minRtt;
  }
  /** True once a sample was taken. */
  get hasSample(): boolean {
    return this.#hasSample;
  }
  /** Number of consecutive RTO expiries (each doubles the RTO). */
  get backoff(): number {
    return this.#backoff;
  }

  /**
   * Add an RTT sample (ms) measured on a packet sent once (Karn's rule). `ackDelay` (ms) is
   * subtracted when that does not take the sample below the min RTT, as QUIC does.
   */
  addSample(sample: number, ackDelay = 0): void {
    if (!(sample >= 0)) throw new RangeError("Invalid RTT sample: expected a non-negative number");
    this.#minRtt = Math.min(this.#minRtt, sample);
    const adjusted = sample - ackDelay >= this.#minRtt ? sample - ackDelay : sample;
    this.#latest = adjusted;
    if (!this.#hasSample) {
      this.#srtt = adjusted;
      this.#rttvar = adjusted / 2;
      this.#hasSample = true;
      return;
    }
    this.#rttvar = 0.75 * this.#rttvar + 0.25 * Math.abs(this.#srtt - adjusted);
    this.#srtt = 0.875 * this.#srtt + 0.125 * adjusted;
  }

  /** The un-backed-off RTO in ms. */
  baseRto(): number {
    const o = this.#options;
    if (!this.#hasSample) return o.initialRto;
    const rto = this.#srtt + Math.max(o.granularity, 4 * this.#rttvar) + o.maxAckDelay;
    return Math.min(o.maxRto, Math.max(o.minRto, rto));
  }

  /** The current RTO in ms, including exponential backoff, capped at maxRto. */
  rto(): number {
    return Math.min(this.#options.maxRto, this.baseRto() * 2 ** this.#backoff);
  }

  /** The retransmission timer expired: double the RTO. */
  onTimeout(): void {
    this.#backoff = Math.min(this.#backoff + 1, 16);
  }

  /** New data was acknowledged: drop the backoff. */
  resetBackoff(): void {
    this.#backoff = 0;
  }
}
