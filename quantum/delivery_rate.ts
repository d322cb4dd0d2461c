/**
 * Delivery-rate sampling as in draft-cheng-iccrg-delivery-rate-estimation and Linux
 * `net/ipv4/tcp_rate.c`.
 *
 * At send time every packet gets a snapshot of the connection's delivery state (`delivered`,
 * `deliveredTime`, `firstSentTime`, `isAppLimited`). When packets are acknowledged the most
 * recently sent of them yields one rate sample:
 *
 * ```
 * rate = (delivered_now − P.delivered) / max(P.sentAt − P.firstSentTime, now − P.deliveredTime)
 * ```
 *
 * Samples whose interval is shorter than the minimum RTT are discarded (they would overestimate
 * the bandwidth after ACK compression). A sample is marked app-limited when the packet was sent
 * while the sender had nothing more to send, so a congestion controller can ignore it unless it
 * exceeds its current estimate.
 *
 * Times are milliseconds (`performance.now()` scale), sizes are bytes, rates bytes per second.
 *
 * @example
 * ```ts
 * const rate = new DeliveryRateEstimator();
 * rate.onPacketSent(0, 1, 1200, 1200);
 * rate.onPacketSent(1, 2, 1200, 2400);
 * const sample = rate.onAck(11, [{ packetNumber: 1 }, { packetNumber: 2 }], [], 10);
 * sample?.deliveryRate; // 2400 bytes / 11 ms ≈ 218 kB/s
 * ```
 * @module
 */

/** The connection's delivery state captured when a packet is sent. */
export interface DeliverySnapshot {
  /** Bytes of the packet. */
  bytes: number;
  /** When the packet was sent (ms). */
  sentAt: number;
  /** Connection's `delivered` byte count when the packet was sent. */
  delivered: number;
  /** Connection's `deliveredTime` when the packet was sent (ms). */
  deliveredTime: number;
  /** Send time of the first packet of the current flight (ms). */
  firstSentTime: number;
  /** Whether the sender was application-limited when the packet was sent. */
  isAppLimited: boolean;
}

/** One delivery-rate sample, produced by an ACK that acknowledged at least one tracked packet. */
export interface RateSample {
  /** Bytes per second delivered over `interval` (0 when the sample is invalid). */
  deliveryRate: number;
  /** Bytes delivered between the reference packet's send and this ACK. */
  delivered: number;
  /** Interval in ms: max(send interval, ack interval); -1 when the sample is invalid. */
  interval: number;
  /** Send phase of the interval (ms). */
  sendInterval: number;
  /** Ack phase of the interval (ms). */
  ackInterval: number;
  /** Connection's `delivered` when the reference packet was sent (for round counting). */
  priorDelivered: number;
  /** The reference packet was sent while app-limited. */
  isAppLimited: boolean;
  /** RTT of the most recently sent acknowledged packet (ms). */
  rtt: number;
  /** Bytes newly acknowledged by this ACK (tracked packets only). */
  ackedBytes: number;
  /** Bytes newly declared lost by this ACK (tracked packets only). */
  lostBytes: number;
  /** False when the interval was shorter than the min RTT (or zero): do not use `deliveryRate`. */
  valid: boolean;
}

/** Identifies a packet in {@linkcode DeliveryRateEstimator.onAck}. */
export interface PacketRef {
  /** Packet number used in `onPacketSent`. */
  packetNumber: number;
  /**
   * The packet is a retransmission. Acknowledged less than the min RTT after it was sent, the
   * ACK must be for an earlier transmission (RFC 8985 §6.2): its bytes count as delivered but
   * it is no sample reference (its snapshot would make a round and a rate out of nothing).
   */
  retransmitted?: boolean;
}

/**
 * Tracks per-packet delivery snapshots and produces rate samples.
 *
 * Packet numbers may be reused for retransmissions: sending the same number again replaces its
 * snapshot (as Linux re-snapshots a retransmitted skb). Memory is bounded by the packets in
 * flight; every tracked packet is forgotten once it is acknowledged, declared lost or
 * {@linkcode DeliveryRateEstimator.forget}-ed.
 */
export class DeliveryRateEstimator {
  #delivered = 0;
  #deliveredTime = 0;
  #firstSentTime = 0;
  /** 0 = not app-limited, else the `delivered` mark at which the app-limited phase ends. */
  #appLimitedUntil = 0;
  #packets = new Map<number, DeliverySnapshot>();

  /** Total bytes delivered (acknowledged) so far. */
  get delivered(): number {
    return this.#delivered;
  }

  /** When `delivered` last grew (ms). */
  get deliveredTime(): number {
    return this.#deliveredTime;
  }

  /** Whether the connection is in an app-limited phase. */
  get isAppLimited(): boolean {
    return this.#appLimitedUntil !== 0;
  }

  /** Number of packets currently tracked (for tests and stats). */
  get trackedPackets(): number {
    return this.#packets.size;
  }

  /**
   * Records a sent packet.
   *
   * @param now send time (ms)
   * @param packetNumber packet number, reported again in `onAck`
   * @param bytes packet size
   * @param bytesInFlight bytes in flight including this packet
   * @returns the snapshot stored for the packet
   */
  onPacketSent(
    now: number,
    packetNumber: number,
    bytes: number,
    bytesInFlight: number,
  ): DeliverySnapshot {
    if (!Number.isFinite(now) || !Number.isFinite(bytes) || bytes < 0) {
      throw new RangeError("Cannot record packet: time and size must be finite and non-negative");
    }
    if (bytesInFlight - bytes <= 0) {
      // Nothing was in flight: a new flight starts now (tcp_rate_skb_sent).
      this.#firstSentTime = now;
      this.#deliveredTime = now;
    }
    const snapshot: DeliverySnapshot = {
      bytes,
      sentAt: now,
      delivered: this.#delivered,
      deliveredTime: this.#deliveredTime,
      firstSentTime: this.#firstSentTime,
      isAppLimited: this.#appLimitedUntil !== 0,
    };
    this.#packets.set(packetNumber, snapshot);
    return snapshot;
  }

  /**
   * Marks the connection app-limited: the sender has nothing more to send, so samples taken
   * until the data now in flight is delivered understate the path's bandwidth.
   *
   * @param bytesInFlight bytes currently in flight
   */
  onAppLimited(bytesInFlight: number): void {
    this.#appLimitedUntil = this.#delivered + Math.max(0, bytesInFlight) || 1;
  }

  /** Stops tracking a packet (for example when its connection gives up on it). */
  forget(packetNumber: number): void {
    this.#packets.delete(packetNumber);
  }

  /**
   * Processes one ACK.
   *
   * @param now time the ACK is processed (ms)
   * @param acked packets newly acknowledged (cumulative or selective)
   * @param lost packets newly declared lost
   * @param minRtt current minimum RTT (ms); shorter intervals are discarded
   * @returns a sample, or `undefined` when no tracked packet was acknowledged
   */
  onAck(
    now: number,
    acked: readonly PacketRef[],
    lost: readonly PacketRef[],
    minRtt: number,
  ): RateSample | undefined {
    let lostBytes = 0;
    for (const packet of lost) {
      const snapshot = this.#packets.get(packet.packetNumber);
      if (snapshot === undefined) continue;
      lostBytes += snapshot.bytes;
      this.#packets.delete(packet.packetNumber);
    }

    let ackedBytes = 0;
    let reference: DeliverySnapshot | undefined;
    for (const packet of acked) {
      const snapshot = this.#packets.get(packet.packetNumber);
      if (snapshot === undefined) continue;
      this.#packets.delete(packet.packetNumber);
      ackedBytes += snapshot.bytes;
      if (packet.retransmitted && now - snapshot.sentAt < minRtt) continue;
      // The most recently sent packet (largest prior delivered, then latest send) is the
      // reference for this sample (tcp_rate_skb_delivered).
      if (
        reference === undefined || snapshot.delivered > reference.delivered ||
        (snapshot.delivered === reference.delivered && snapshot.sentAt >= reference.sentAt)
      ) {
        reference = snapshot;
      }
    }
    this.#delivered += ackedBytes;
    if (reference === undefined) return undefined;
    this.#deliveredTime = now;
    // The send time of the newest acknowledged packet starts the next send phase.
    this.#firstSentTime = reference.sentAt;
    if (this.#appLimitedUntil !== 0 && this.#delivered > this.#appLimitedUntil) {
      this.#appLimitedUntil = 0;
    }

    const sendInterval = reference.sentAt - reference.firstSentTime;
    const ackInterval = now - reference.deliveredTime;
    const interval = Math.max(sendInterval, ackInterval);
    const delivered = this.#delivered - reference.delivered;
    const valid = interval > 0 && interval >= minRtt;
    return {
      deliveryRate: valid ? (delivered * 1000) / interval : 0,
      delivered,
      interval: valid ? interval : -1,
      sendInterval,
      ackInterval,
      priorDelivered: reference.delivered,
      isAppLimited: reference.isAppLimited,
      rtt: now - reference.sentAt,
      ackedBytes,
      lostBytes,
      valid,
    };
  }
}
