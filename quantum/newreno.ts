/**
 * NewReno congestion control (RFC 6582 / RFC 5681 with SACK-based loss detection upstream):
 * slow start, congestion avoidance, one multiplicative decrease per recovery episode, and a
 * collapse to the minimum window on persistent congestion. Unpaced.
 *
 * @example
 * ```ts
 * const cc = newReno({ mss: 1100, now: 0 });
 * cc.congestionWindow(); // 10 * 1100
 * ```
 * @module
 */
import type { AckEvent, CongestionController, SentPacket } from "./congestion.ts";

/** Options for {@linkcode newReno}. */
export interface NewRenoOptions {
  /** Maximum segment size in bytes. */
  mss: number;
  /** Creation time in ms. */
  now: number;
  /** Initial window in packets (default 10). */
  initialWindowPackets?: number;
  /** Minimum window in packets (default 2). */
  minWindowPackets?: number;
}

/** A NewReno controller. */
export function newReno(options: NewRenoOptions): CongestionController {
  return new NewReno(options);
}

class NewReno implements CongestionController {
  readonly name = "newreno";
  #mss: number;
  #cwnd: number;
  #ssthresh = Infinity;
  #minWindow: number;
  #recoveryStart = -Infinity;
  #avoidanceCredit = 0;

  constructor(options: NewRenoOptions) {
    if (!(options.mss > 0)) throw new RangeError("Invalid mss: expected > 0");
    this.#mss = options.mss;
    this.#cwnd = (options.initialWindowPackets ?? 10) * options.mss;
    this.#minWindow = (options.minWindowPackets ?? 2) * options.mss;
  }

  congestionWindow(): number {
    return this.#cwnd;
  }

  pacingRate(): number {
    return Infinity;
  }

  onPacketSent(_now: number, _packet: SentPacket, _inFlight: number, _retx: boolean): void {}

  onAck(event: AckEvent): void {
    for (const lost of event.lost) {
      // One reduction per window: only losses of packets sent after recovery began count.
      if (lost.sentAt > this.#recoveryStart) {
        this.#recoveryStart = event.now;
        this.#ssthresh = Math.max(this.#cwnd / 2, this.#minWindow);
        this.#cwnd = this.#ssthresh;
        this.#avoidanceCredit = 0;
      }
    }
    for (const packet of event.acked) {
      if (packet.sentAt <= this.#recoveryStart) continue; // no growth during recovery
      if (this.#cwnd < this.#ssthresh) {
        this.#cwnd += packet.bytes;
      } else {
        this.#avoidanceCredit += packet.bytes;
        if (this.#avoidanceCredit >= this.#cwnd) {
          this.#avoidanceCredit -= this.#cwnd;
          this.#cwnd += this.#mss;
        }
      }
    }
  }

  onPersistentCongestion(now: number): void {
    this.#ssthresh = Math.max(this.#cwnd / 2, this.#minWindow);
    this.#cwnd = this.#minWindow;
    this.#recoveryStart = now;
    this.#avoidanceCredit = 0;
  }

  onAppLimited(_now: number, _bytesInFlight: number): void {}
}
