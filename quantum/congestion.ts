/**
 * Congestion control interface shared by every controller (NewReno here, BBR in `bbr.ts`).
 *
 * Times are milliseconds on the `performance.now()` scale, sizes are bytes. A controller is a
 * pure state machine: it never reads a clock and never sets a timer; the connection feeds it
 * events with `now`.
 *
 * @example
 * ```ts
 * const cc = newReno({ mss: 1200, now: 0 });
 * cc.onPacketSent(0, { packetNumber: 1, bytes: 1200, sentAt: 0 }, 1200, false);
 * cc.onAck({ now: 10, acked: [{ packetNumber: 1, bytes: 1200, sentAt: 0 }], lost: [],
 *   rttSample: 10, minRtt: 10, priorBytesInFlight: 1200, bytesInFlight: 0 });
 * cc.congestionWindow(); // grew by one MSS in slow start
 * ```
 * @module
 */

/** One data packet as the congestion controller sees it. */
export interface SentPacket {
  /** Sequence number of the packet (unique per transmission is not required). */
  packetNumber: number;
  /** Bytes on the wire counted against the congestion window. */
  bytes: number;
  /** When it was (last) sent, in ms. */
  sentAt: number;
  /** Sent more than once: an ACK soon after the last send may be for an earlier one. */
  retransmitted?: boolean;
}

/** Everything one incoming acknowledgement changed. */
export interface AckEvent {
  /** When the ACK was processed, in ms. */
  now: number;
  /** Newly acknowledged (cumulative or SACK); never FEC-recovered packets. */
  acked: readonly SentPacket[];
  /** Newly declared lost. */
  lost: readonly SentPacket[];
  /** Latest RTT sample (ms), absent when Karn's rule forbids one. */
  rttSample?: number;
  /** Minimum RTT from the RTT estimator (ms). */
  minRtt: number;
  /** Bytes in flight before this event. */
  priorBytesInFlight: number;
  /** Bytes in flight after this event. */
  bytesInFlight: number;
}

/** A congestion controller: decides how many bytes may be in flight and how fast to pace. */
export interface CongestionController {
  /** Short name for stats, e.g. `"newreno"` or `"bbr"`. */
  readonly name: string;
  /** Bytes allowed in flight. */
  congestionWindow(): number;
  /** Bytes per second (Infinity = unpaced). */
  pacingRate(): number;
  /** A data packet left (first transmission or retransmission). */
  onPacketSent(
    now: number,
    packet: SentPacket,
    bytesInFlight: number,
    isRetransmission: boolean,
  ): void;
  /** Packets were acknowledged and/or declared lost. */
  onAck(event: AckEvent): void;
  /**
   * Persistent congestion (RFC 9002 §7.6): ACKs showed the packets were lost across repeated
   * retransmission timeouts. A timeout alone is not reported: it is usually a stall.
   */
  onPersistentCongestion(now: number): void;
  /** The sender has nothing more to send. */
  onAppLimited(now: number, bytesInFlight: number): void;
}

/** Builds a controller for a new connection. */
export type CongestionControllerFactory = (
  options: { mss: number; now: number },
) => CongestionController;
