/**
 * BBR v1 congestion control (Linux `net/ipv4/tcp_bbr.c`, draft-cardwell-iccrg-bbr-congestion-control-00)
 * behind the {@linkcode CongestionController} interface.
 *
 * BBR models the path by two numbers, the bottleneck bandwidth (a windowed maximum of
 * delivery-rate samples over 10 round trips) and the round-trip propagation time (a 10 s windowed
 * minimum of RTT samples), and paces at gain × bandwidth with a window of gain × BDP. It moves
 * through four modes:
 *
 * - `startup`: pacing and cwnd gain 2/ln2 ≈ 2.885 (doubles the sending rate every round) until the
 *   bandwidth estimate grows by less than 25% for 3 rounds ("full pipe");
 * - `drain`: pacing gain 1/2.885 until the bytes in flight fall to one BDP;
 * - `probe_bw`: cwnd gain 2, pacing gain cycling through [1.25, 0.75, 1, 1, 1, 1, 1, 1], one phase
 *   per min RTT, starting at a random phase other than 0.75;
 * - `probe_rtt`: when the min RTT was not refreshed for 10 s, cwnd drops to 4 packets for at least
 *   200 ms and one round so the queue drains and a fresh min RTT can be measured.
 *
 * Not implemented from Linux: the long-term (policer) bandwidth estimate and the ACK-aggregation
 * cwnd extension. Loss handling follows Linux: cwnd shrinks by the lost bytes, packet conservation
 * for the first round of recovery, and the cwnd saved before recovery (or persistent congestion) is restored after.
 *
 * Times are ms, sizes bytes, rates bytes per second.
 *
 * @example
 * ```ts
 * const bbr = createBbr({ mss: 1200, now: 0 });
 * bbr.onPacketSent(0, { packetNumber: 1, bytes: 1200, sentAt: 0 }, 1200, false);
 * bbr.onAck({ now: 10, acked: [{ packetNumber: 1, bytes: 1200, sentAt: 0 }], lost: [],
 *   rttSample: 10, minRtt: 10, priorBytesInFlight: 1200, bytesInFlight: 0 });
 * bbr.mode; // "startup"
 * ```
 * @module
 */

import type { AckEvent, CongestionController, SentPacket } from "./congestion.ts";
import { DeliveryRateEstimator } from "./delivery_rate.ts";

/** STARTUP pacing and cwnd gain: 2/ln 2 ≈ 2.885, the smallest gain that doubles every round. */
export const BBR_HIGH_GAIN: number = 2 / Math.LN2;
/** DRAIN pacing gain: the inverse of the STARTUP gain. */
export const BBR_DRAIN_GAIN: number = 1 / BBR_HIGH_GAIN;
/** PROBE_BW cwnd gain. */
export const BBR_CWND_GAIN = 2;
/** PROBE_BW pacing gain cycle, one phase per min RTT. */
export const BBR_PACING_GAIN_CYCLE: readonly number[] = Object.freeze([
  1.25,
  0.75,
  1,
  1,
  1,
  1,
  1,
  1,
]);
/** Length of the bandwidth max-filter window, in round trips. */
export const BBR_BW_FILTER_ROUNDS = 10;
/** Length of the min-RTT filter window (ms). */
export const BBR_MIN_RTT_WINDOW_MS = 10_000;
/** Minimum time PROBE_RTT holds the window at its floor (ms). */
export const BBR_PROBE_RTT_DURATION_MS = 200;
/** cwnd floor, and the PROBE_RTT window, in packets. */
export const BBR_MIN_CWND_PACKETS = 4;
/** Initial cwnd in packets (TCP_INIT_CWND). */
export const BBR_INITIAL_CWND_PACKETS = 10;
/** STARTUP continues while the bandwidth estimate grows at least by this factor per round. */
export const BBR_FULL_BW_GROWTH = 1.25;
/** Rounds without enough growth after which the pipe is considered full. */
export const BBR_FULL_BW_ROUNDS = 3;
/** Pacing margin: pace this fraction below the bandwidth estimate. */
export const BBR_PACING_MARGIN = 0.01;
/** Send quanta added to the target cwnd to absorb send batching (Linux: 3 × TSO goal). */
export const BBR_QUANTIZATION_QUANTA = 3;

/** BBR's mode. */
export type BbrMode =
  /** Ramping up exponentially to find the bottleneck bandwidth. */
  | "startup"
  /** Draining the queue STARTUP built. */
  | "drain"
  /** Steady state: cruising at the estimate, probing up and down in an 8-phase cycle. */
  | "probe_bw"
  /** Window at 4 packets to re-measure the propagation delay. */
  | "probe_rtt";

/** Options for {@linkcode createBbr}. */
export interface BbrOptions {
  /** Maximum segment (packet payload) size in bytes. */
  mss: number;
  /** Current time (ms). */
  now: number;
  /** Random source in [0, 1) used for the PROBE_BW start phase (default `Math.random`). */
  random?: () => number;
}

/** A read-only view of BBR's internal state, for stats and tests. */
export interface BbrState {
  mode: BbrMode;
  /** Windowed max bandwidth (bytes/s), 0 before the first valid sample. */
  bandwidth: number;
  /** Windowed min RTT (ms), Infinity before the first sample. */
  minRtt: number;
  pacingGain: number;
  cwndGain: number;
  congestionWindow: number;
  pacingRate: number;
  roundCount: number;
  fullBandwidthReached: boolean;
  /** PROBE_BW phase index into {@linkcode BBR_PACING_GAIN_CYCLE}. */
  cycleIndex: number;
  inRecovery: boolean;
}

interface Sample {
  time: number;
  value: number;
}

/**
 * Windowed running maximum (Kathleen Nichols' algorithm, Linux `lib/win_minmax.c`): keeps the
 * best, second-best and third-best samples of the window so expiry costs O(1).
 *
 * @example
 * ```ts
 * const filter = new WindowedMaxFilter(10);
 * filter.update(0, 5);
 * filter.update(3, 2);
 * filter.best; // 5
 * filter.update(11, 1);
 * filter.best; // 2 (the 5 expired)
 * ```
 */
export class WindowedMaxFilter {
  #window: number;
  #s: [Sample, Sample, Sample] = [{ time: 0, value: 0 }, { time: 0, value: 0 }, {
    time: 0,
    value: 0,
  }];

  /** @param window window length in the caller's time unit (BBR uses round trips) */
  constructor(window: number) {
    if (!(window > 0)) throw new RangeError("Cannot create filter: window must be positive");
    this.#window = window;
  }

  /** Current maximum over the window. */
  get best(): number {
    return this.#s[0].value;
  }

  /** Forgets everything and starts over with one sample. */
  reset(time: number, value: number): number {
    const sample = { time, value };
    this.#s = [sample, sample, sample];
    return value;
  }

  /** Adds a sample and returns the updated maximum. */
  update(time: number, value: number): number {
    const s = this.#s;
    const sample = { time, value };
    if (value >= s[0].value || time - s[2].time > this.#window) return this.reset(time, value);
    if (value >= s[1].value) {
      s[1] = sample;
      s[2] = sample;
    } else if (value >= s[2].value) {
      s[2] = sample;
    }
    const dt = time - s[0].time;
    if (dt > this.#window) {
      s[0] = s[1];
      s[1] = s[2];
      s[2] = sample;
      if (time - s[0].time > this.#window) {
        s[0] = s[1];
        s[1] = s[2];
        s[2] = sample;
      }
    } else if (s[1].time === s[0].time && dt > this.#window / 4) {
      s[1] = sample;
      s[2] = sample;
    } else if (s[2].time === s[1].time && dt > this.#window / 2) {
      s[2] = sample;
    }
    return s[0].value;
  }
}

/**
 * BBR v1 controller. Create it with {@linkcode createBbr}.
 *
 * Besides the interface it exposes `mode` and {@linkcode Bbr.state} for stats and tests.
 */
export class Bbr implements CongestionController {
  /** Controller name for stats. */
  readonly name = "bbr";
  readonly #mss: number;
  readonly #random: () => number;
  readonly #rate = new DeliveryRateEstimator();
  readonly #bwFilter = new WindowedMaxFilter(BBR_BW_FILTER_ROUNDS);

  #mode: BbrMode = "startup";
  #pacingGain = BBR_HIGH_GAIN;
  #cwndGain = BBR_HIGH_GAIN;
  #cwnd: number;
  #pacingRate: number;
  #hasSeenRtt = false;

  #roundCount = 0;
  #nextRoundDelivered = 0;
  #roundStart = false;

  #minRtt = Infinity;
  #minRttStamp: number;
  #probeRttDoneStamp: number | undefined;
  #probeRttRoundDone = false;
  #idleRestart = false;

  #fullBw = 0;
  #fullBwCount = 0;
  #fullBwReached = false;

  #cycleIndex = 0;
  #cycleStamp = 0;

  #priorCwnd = 0;
  #inRecovery = false;
  #recoveryEndDelivered = 0;
  #rtoTime: number | undefined;
  #packetConservation = false;
  #pendingLostBytes = 0;

  /** Use {@linkcode createBbr}. */
  constructor(options: BbrOptions) {
    const { mss, now } = options;
    if (!Number.isInteger(mss) || mss <= 0) {
      throw new RangeError("Cannot create BBR: mss must be a positive integer");
    }
    if (!Number.isFinite(now)) throw new RangeError("Cannot create BBR: now must be finite");
    this.#mss = mss;
    this.#random = options.random ?? Math.random;
    this.#cwnd = BBR_INITIAL_CWND_PACKETS * mss;
    this.#minRttStamp = now;
    // No RTT yet: assume 1 ms like Linux (bbr_init_pacing_rate_from_rtt).
    this.#pacingRate = this.#toPacingRate(this.#cwnd * 1000, BBR_HIGH_GAIN);
  }

  /** Current mode. */
  get mode(): BbrMode {
    return this.#mode;
  }

  /** A snapshot of the internal state. */
  state(): BbrState {
    return {
      mode: this.#mode,
      bandwidth: this.#bwFilter.best,
      minRtt: this.#minRtt,
      pacingGain: this.#pacingGain,
      cwndGain: this.#cwndGain,
      congestionWindow: this.#cwnd,
      pacingRate: this.#pacingRate,
      roundCount: this.#roundCount,
      fullBandwidthReached: this.#fullBwReached,
      cycleIndex: this.#cycleIndex,
      inRecovery: this.#inRecovery,
    };
  }

  /** Bytes allowed in flight. */
  congestionWindow(): number {
    return this.#cwnd;
  }

  /** Pacing rate in bytes per second. */
  pacingRate(): number {
    return this.#pacingRate;
  }

  /** Records a sent packet's delivery snapshot; `bytesInFlight` includes the packet. */
  onPacketSent(
    now: number,
    packet: SentPacket,
    bytesInFlight: number,
    _isRetransmission: boolean,
  ): void {
    if (bytesInFlight - packet.bytes <= 0 && this.#rate.isAppLimited) {
      // Restarting from idle (CA_EVENT_TX_START): resume at the estimated rate.
      this.#idleRestart = true;
      if (this.#mode === "probe_bw") this.#setPacingRate(this.#bandwidth(), 1);
      else if (this.#mode === "probe_rtt") this.#checkProbeRttDone(now);
    }
    this.#rate.onPacketSent(now, packet.packetNumber, packet.bytes, bytesInFlight);
  }

  /** Runs the BBR model on one ACK (bbr_main). */
  onAck(event: AckEvent): void {
    const { now } = event;
    const sample = this.#rate.onAck(now, event.acked, event.lost, event.minRtt);
    let acked = 0;
    for (const p of event.acked) acked += p.bytes;
    for (const p of event.lost) this.#pendingLostBytes += p.bytes;
    this.#roundStart = false;
    if (sample !== undefined) {
      this.#updateBandwidth(sample.priorDelivered, sample);
      this.#updateCyclePhase(now, event.priorBytesInFlight, event.lost.length > 0);
      this.#checkFullBandwidthReached(sample.isAppLimited);
      this.#checkDrain(now, event.bytesInFlight);
    }
    this.#updateMinRtt(now, event.rttSample, event.bytesInFlight);
    if (sample !== undefined && sample.delivered > 0) this.#idleRestart = false;
    this.#updateGains();
    this.#setPacingRate(this.#bandwidth(), this.#pacingGain, event.rttSample);
    this.#setCwnd(now, acked, event.bytesInFlight, sample?.rtt);
  }

  /** Persistent congestion: everything in flight was lost; restart from the cwnd floor. */
  onPersistentCongestion(now: number): void {
    this.#saveCwnd();
    this.#inRecovery = true;
    this.#rtoTime = now;
    this.#packetConservation = false;
    this.#pendingLostBytes = 0;
    this.#cwnd = BBR_MIN_CWND_PACKETS * this.#mss;
    // bbr_set_state(TCP_CA_Loss): restart full-pipe growth tracking in a new round.
    this.#fullBw = 0;
    this.#roundStart = true;
  }

  /** The sender has nothing more to send: mark samples app-limited until this flight is acked. */
  onAppLimited(_now: number, bytesInFlight: number): void {
    this.#rate.onAppLimited(bytesInFlight);
  }

  #bandwidth(): number {
    return this.#bwFilter.best;
  }

  #toPacingRate(bandwidth: number, gain: number): number {
    return bandwidth * gain * (1 - BBR_PACING_MARGIN);
  }

  /** gain × BDP in bytes; the initial window before any RTT sample. */
  #bdp(bandwidth: number, gain: number): number {
    if (this.#minRtt === Infinity || bandwidth <= 0) return BBR_INITIAL_CWND_PACKETS * this.#mss;
    return Math.ceil((bandwidth * this.#minRtt / 1000) * gain);
  }

  /** Target inflight for a gain, with headroom for send batching (bbr_quantization_budget). */
  #inflight(bandwidth: number, gain: number): number {
    const quantum = Math.max(2 * this.#mss, Math.ceil(Math.min(this.#pacingRate / 1000, 65_536)));
    let cwnd = this.#bdp(bandwidth, gain) + BBR_QUANTIZATION_QUANTA * quantum;
    if (this.#mode === "probe_bw" && this.#cycleIndex === 0) cwnd += 2 * this.#mss;
    return cwnd;
  }

  #updateBandwidth(priorDelivered: number, sample: {
    valid: boolean;
    deliveryRate: number;
    isAppLimited: boolean;
  }): void {
    if (priorDelivered >= this.#nextRoundDelivered) {
      this.#nextRoundDelivered = this.#rate.delivered;
      this.#roundCount++;
      this.#roundStart = true;
      this.#packetConservation = false;
    }
    if (!sample.valid) return;
    if (!sample.isAppLimited || sample.deliveryRate >= this.#bwFilter.best) {
      this.#bwFilter.update(this.#roundCount, sample.deliveryRate);
    }
  }

  #updateCyclePhase(now: number, priorInflight: number, hadLosses: boolean): void {
    if (this.#mode !== "probe_bw") return;
    const fullLength = now - this.#cycleStamp > this.#minRtt;
    let next: boolean;
    if (this.#pacingGain === 1) {
      next = fullLength;
    } else if (this.#pacingGain > 1) {
      next = fullLength &&
        (hadLosses || priorInflight >= this.#inflight(this.#bandwidth(), this.#pacingGain));
    } else {
      next = fullLength || priorInflight <= this.#inflight(this.#bandwidth(), 1);
    }
    if (next) this.#advanceCyclePhase(now);
  }

  #advanceCyclePhase(now: number): void {
    this.#cycleIndex = (this.#cycleIndex + 1) % BBR_PACING_GAIN_CYCLE.length;
    this.#cycleStamp = now;
  }

  #checkFullBandwidthReached(appLimited: boolean): void {
    if (this.#fullBwReached || !this.#roundStart || appLimited) return;
    const bandwidth = this.#bandwidth();
    if (bandwidth >= this.#fullBw * BBR_FULL_BW_GROWTH) {
      this.#fullBw = bandwidth;
      this.#fullBwCount = 0;
      return;
    }
    this.#fullBwCount++;
    this.#fullBwReached = this.#fullBwCount >= BBR_FULL_BW_ROUNDS;
  }

  #checkDrain(now: number, inflight: number): void {
    if (this.#mode === "startup" && this.#fullBwReached) this.#mode = "drain";
    if (this.#mode === "drain" && inflight <= this.#inflight(this.#bandwidth(), 1)) {
      this.#resetProbeBwMode(now);
    }
  }

  #resetProbeBwMode(now: number): void {
    this.#mode = "probe_bw";
    // Random start in 1..7, then advance: the first phase is never 1 (the 0.75 drain phase).
    const r = Math.min(Math.floor(this.#random() * 7), 6);
    this.#cycleIndex = BBR_PACING_GAIN_CYCLE.length - 1 - Math.max(0, r);
    this.#advanceCyclePhase(now);
  }

  #resetMode(now: number): void {
    if (this.#fullBwReached) this.#resetProbeBwMode(now);
    else this.#mode = "startup";
  }

  #updateMinRtt(now: number, rtt: number | undefined, inflight: number): void {
    const expired = now - this.#minRttStamp > BBR_MIN_RTT_WINDOW_MS;
    if (rtt !== undefined && rtt >= 0 && (rtt < this.#minRtt || expired)) {
      this.#minRtt = rtt;
      this.#minRttStamp = now;
    }
    if (expired && !this.#idleRestart && this.#mode !== "probe_rtt") {
      this.#mode = "probe_rtt";
      this.#saveCwnd();
      this.#probeRttDoneStamp = undefined;
    }
    if (this.#mode !== "probe_rtt") return;
    // Samples taken while the window is clamped say nothing about the path's bandwidth.
    this.#rate.onAppLimited(inflight);
    if (
      this.#probeRttDoneStamp === undefined &&
      inflight <= BBR_MIN_CWND_PACKETS * this.#mss
    ) {
      this.#probeRttDoneStamp = now + BBR_PROBE_RTT_DURATION_MS;
      this.#probeRttRoundDone = false;
      this.#nextRoundDelivered = this.#rate.delivered;
    } else if (this.#probeRttDoneStamp !== undefined) {
      if (this.#roundStart) this.#probeRttRoundDone = true;
      if (this.#probeRttRoundDone) this.#checkProbeRttDone(now);
    }
  }

  #checkProbeRttDone(now: number): void {
    if (this.#probeRttDoneStamp === undefined || now < this.#probeRttDoneStamp) return;
    this.#minRttStamp = now;
    this.#cwnd = Math.max(this.#cwnd, this.#priorCwnd);
    this.#probeRttDoneStamp = undefined;
    this.#resetMode(now);
  }

  #updateGains(): void {
    switch (this.#mode) {
      case "startup":
        this.#pacingGain = BBR_HIGH_GAIN;
        this.#cwndGain = BBR_HIGH_GAIN;
        break;
      case "drain":
        this.#pacingGain = BBR_DRAIN_GAIN;
        this.#cwndGain = BBR_HIGH_GAIN;
        break;
      case "probe_bw":
        this.#pacingGain = BBR_PACING_GAIN_CYCLE[this.#cycleIndex] ?? 1;
        this.#cwndGain = BBR_CWND_GAIN;
        break;
      case "probe_rtt":
        this.#pacingGain = 1;
        this.#cwndGain = 1;
        break;
    }
  }

  #setPacingRate(bandwidth: number, gain: number, rttSample?: number): void {
    if (!this.#hasSeenRtt && rttSample !== undefined && rttSample > 0) {
      // First RTT sample: re-derive the initial pacing rate from cwnd / RTT.
      this.#hasSeenRtt = true;
      this.#pacingRate = this.#toPacingRate(this.#cwnd * 1000 / rttSample, BBR_HIGH_GAIN);
    }
    if (bandwidth <= 0) return;
    const rate = this.#toPacingRate(bandwidth, gain);
    if (this.#fullBwReached || rate > this.#pacingRate) this.#pacingRate = rate;
  }

  #saveCwnd(): void {
    if (!this.#inRecovery && this.#mode !== "probe_rtt") this.#priorCwnd = this.#cwnd;
    else this.#priorCwnd = Math.max(this.#priorCwnd, this.#cwnd);
  }

  /** Loss recovery (bbr_set_cwnd_to_recover_or_restore); returns true when cwnd is settled. */
  #recoverOrRestore(acked: number, inflight: number, ackedSentAt: number | undefined): boolean {
    const lost = this.#pendingLostBytes;
    this.#pendingLostBytes = 0;
    const floor = this.#lossFloor();
    if (lost > 0) this.#cwnd = Math.max(this.#cwnd - lost, floor);
    if (lost > 0 && !this.#inRecovery) {
      // Entering recovery: conserve packets for one round.
      this.#saveCwnd();
      this.#inRecovery = true;
      this.#rtoTime = undefined;
      this.#recoveryEndDelivered = this.#rate.delivered + inflight;
      this.#packetConservation = true;
      this.#nextRoundDelivered = this.#rate.delivered;
      this.#cwnd = Math.max(inflight + acked, floor);
    } else if (this.#inRecovery && lost === 0) {
      const done = this.#rtoTime !== undefined
        ? ackedSentAt !== undefined && ackedSentAt >= this.#rtoTime
        : this.#rate.delivered >= this.#recoveryEndDelivered;
      if (done) {
        this.#inRecovery = false;
        this.#rtoTime = undefined;
        this.#packetConservation = false;
        this.#cwnd = Math.max(this.#cwnd, this.#priorCwnd);
      }
    }
    if (this.#packetConservation) {
      this.#cwnd = Math.max(this.#cwnd, inflight + acked);
      return true;
    }
    return false;
  }

  /**
   * The lowest window loss recovery may cut to: one BDP at the bandwidth estimate (plus send
   * quanta). Random loss is not congestion; the estimate (a delivery-rate maximum) already
   * falls when the path really is congested, so losses only take the window down to what the
   * model says the path carries (and a STARTUP that keeps its window still sees the pipe
   * fill). After persistent congestion: one packet (Linux after an RTO).
   */
  #lossFloor(): number {
    if (this.#rtoTime !== undefined) return this.#mss;
    return this.#inflight(this.#bandwidth(), 1);
  }

  #setCwnd(now: number, acked: number, inflight: number, sampleRtt: number | undefined): void {
    const floor = BBR_MIN_CWND_PACKETS * this.#mss;
    if (acked > 0) {
      const ackedSentAt = sampleRtt === undefined ? undefined : now - sampleRtt;
      if (!this.#recoverOrRestore(acked, inflight, ackedSentAt)) {
        const target = this.#inflight(this.#bandwidth(), this.#cwndGain);
        if (this.#fullBwReached) {
          this.#cwnd = Math.min(this.#cwnd + acked, target);
        } else if (
          this.#cwnd < target || this.#rate.delivered < BBR_INITIAL_CWND_PACKETS * this.#mss
        ) {
          this.#cwnd += acked;
        }
      }
    }
    // Unlike Linux, the floor also holds during packet conservation.
    this.#cwnd = Math.max(this.#cwnd, floor);
    if (this.#mode === "probe_rtt") this.#cwnd = Math.min(this.#cwnd, floor);
  }
}

/**
 * Creates a BBR v1 controller; a {@linkcode CongestionControllerFactory}.
 *
 * @example
 * ```ts
 * const cc = createBbr({ mss: 1200, now: performance.now() });
 * cc.pacingRate(); // initial rate: 2.885 × 10 packets per ms until the first RTT sample
 * ```
 */
export function createBbr(options: BbrOptions): Bbr {
  return new Bbr(options);
}
