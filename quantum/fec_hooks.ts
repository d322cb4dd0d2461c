/**
 * The built-in FEC stage of a connection: {@linkcode FecEncoder} / {@linkcode FecDecoder} plugged
 * into the connection's datagram hooks (`hooks.ts`), with optional parity adapted to the loss the
 * receiver reports. Wire layout: PROTOCOL.md, "FEC extension" and "FEC loss report".
 *
 * - Sending (`fec` option set): every data datagram joins a group; after `dataShards` packets,
 *   after `flushAfterMs`, or as soon as nothing more is queued (sparse messages), the group's
 *   parity goes out right behind it. Loss detection waits until the parity can have repaired a
 *   loss (`reorderTolerance`).
 * - Receiving (always): data shards and parity feed a decoder created on the first FEC packet;
 *   rebuilt packets go back to the connection, which never takes RTT samples or congestion
 *   signals from them. Pure ACKs carry a loss report (shards received / missing) while FEC
 *   traffic arrives, so an adaptive sender can size its parity.
 *
 * @example
 * ```ts
 * const conn = await dial({ hostname: "127.0.0.1", port: 9000, fec: { adaptive: true } });
 * conn.stats().fec; // { parityShards, dataPackets, parityPackets, recoveredPackets, ... }
 * ```
 * @module
 */
import {
  AdaptiveFecPolicy,
  FEC_DEFAULT_DATA_SHARDS,
  FEC_DEFAULT_FLUSH_AFTER_MS,
  FEC_DEFAULT_PARITY_SHARDS,
  FecDecoder,
  FecEncoder,
  type ParityShard,
} from "./fec.ts";
import type { DatagramHooks, DatagramHooksFactory, Emit } from "./hooks.ts";
import { encodePacket, FLAG, type Packet } from "./wire.ts";

/** Per-connection FEC settings (the `fec` connection option). */
export interface FecOptions {
  /** Data packets per group (1..64, default 10). */
  dataShards?: number;
  /** Parity packets per group (default 3); with `adaptive`, the most it may use (default 4). */
  parityShards?: number;
  /** Close a partly filled group after this long (ms, default 3). */
  flushAfterMs?: number;
  /** Choose the parity count from the measured loss (0 on a clean path). Default false. */
  adaptive?: boolean;
}

/** FEC counters of one connection (`stats().fec`). */
export interface FecHookStats {
  /** True when this side protects what it sends. */
  sending: boolean;
  /** Parity packets per group used for new groups now. */
  parityShards: number;
  /** Parity packets the last sparse message got (adaptive; fixed FEC uses `parityShards`). */
  sparseParityShards: number;
  /** Data packets put into groups. */
  dataPackets: number;
  /** Parity packets sent. */
  parityPackets: number;
  /** Protected datagram bytes. */
  dataBytes: number;
  /** Parity payload bytes sent. */
  parityBytes: number;
  /** Groups closed before they filled (flush timer or nothing more queued). */
  partialGroups: number;
  /** Loss rate the sender plans for (adaptive: EWMA; otherwise the peer's reports so far). */
  lossEstimate: number;
  /** Packets the decoder rebuilt (including ones that later arrived anyway). */
  recoveredPackets: number;
  /** Shards received and stored by the decoder. */
  shardsReceived: number;
  /** Shards of finished groups that never arrived. */
  shardsMissing: number;
  /** Loss reports sent / received. */
  reportsSent: number;
  /** Loss reports received. */
  reportsReceived: number;
}

/** Creates the built-in FEC hooks; `false` = decode and report only, send no FEC. */
export function fecHooks(options: false | FecOptions): DatagramHooksFactory {
  if (options) {
    const data = options.dataShards ?? FEC_DEFAULT_DATA_SHARDS;
    if (!Number.isInteger(data) || data < 1 || data > 64) {
      throw new RangeError("Invalid fec.dataShards: expected an integer in 1..64");
    }
    const parity = options.parityShards ?? (options.adaptive ? 4 : FEC_DEFAULT_PARITY_SHARDS);
    if (!Number.isInteger(parity) || parity < 0 || parity > 16) {
      throw new RangeError("Invalid fec.parityShards: expected an integer in 0..16");
    }
    const flush = options.flushAfterMs ?? FEC_DEFAULT_FLUSH_AFTER_MS;
    if (!(flush >= 0) || !Number.isFinite(flush)) {
      throw new RangeError("Invalid fec.flushAfterMs: expected a finite number >= 0");
    }
  }
  return ({ connectionId }) => new FecHooks(connectionId, options);
}

const REPORT_MASK = 0xffff;

class FecHooks implements DatagramHooks {
  readonly #connectionId: string;
  readonly #encoder: FecEncoder | null = null;
  readonly #policy: AdaptiveFecPolicy | null = null;
  /** Loss our decoder sees on the way in: a hint for sparse parity on a symmetric path. */
  readonly #incoming: AdaptiveFecPolicy | null = null;
  #incomingSeen = { accepted: 0, missing: 0 };
  #lastSparseParity = 0;
  readonly #flushAfterMs: number;
  #decoder: FecDecoder | null = null;
  #lastReport = -1;
  #peerAccepted = -1;
  #peerMissing = -1;
  #lossEstimate = 0;
  #reportedAccepted = 0;
  #reportedMissing = 0;
  #reportsSent = 0;
  #reportsReceived = 0;
  /** Only with FEC: without an encoder data datagrams need no hook (sent as encoded). */
  readonly onSendData?: DatagramHooks["onSendData"];

  constructor(connectionId: string, options: false | FecOptions) {
    this.#connectionId = connectionId;
    this.#flushAfterMs = options ? options.flushAfterMs ?? FEC_DEFAULT_FLUSH_AFTER_MS : 0;
    if (!options) return;
    const dataShards = options.dataShards ?? FEC_DEFAULT_DATA_SHARDS;
    if (options.adaptive) {
      this.#policy = new AdaptiveFecPolicy({
        dataShards,
        maxParity: options.parityShards ?? 4,
        initialLossRate: 0,
      });
      // A short window: sparse parity is cheap, so it may follow the loss quickly.
      this.#incoming = new AdaptiveFecPolicy({
        dataShards,
        maxParity: options.parityShards ?? 4,
        initialLossRate: 0,
        windowPackets: 200,
      });
    }
    const encoder = new FecEncoder({
      dataShards,
      parityShards: this.#policy?.parityShards() ?? options.parityShards ??
        FEC_DEFAULT_PARITY_SHARDS,
      flushAfterMs: this.#flushAfterMs,
    });
    this.#encoder = encoder;
    this.onSendData = (datagram, packet, emit, now) =>
      this.#protect(encoder, datagram, packet, emit, now);
  }

  #protect(encoder: FecEncoder, datagram: Uint8Array, packet: Packet, emit: Emit, now: number) {
    // The last queued packet (PSH) may be a sparse message: adaptive mode protects it even
    // while full groups carry no parity.
    const sparse = (packet.flags & FLAG.PSH) !== 0;
    const minParity = sparse ? this.#sparseParity() : 0;
    const { tag, parity, groupParity } = encoder.add(now, datagram, minParity);
    if (tag === undefined) return emit(datagram);
    emit(encodePacket({
      ...packet,
      flags: packet.flags | FLAG.FEC,
      fec: {
        group: tag.groupId,
        index: tag.index,
        dataShards: encoder.dataShards,
        parityShards: groupParity,
      },
    }));
    this.#emitParity(parity, emit);
  }

  onIdle(_now: number, emit: Emit): void {
    // Nothing more queued: close the group now, with sparse-message parity when adaptive.
    if (this.#encoder) this.#emitParity(this.#encoder.flush(this.#sparseParity()), emit);
  }

  nextDeadline(): number {
    const at = this.#encoder?.nextFlushTime();
    return at === undefined ? Infinity : at - 1e-6;
  }

  onTimer(now: number, emit: Emit): void {
    if (this.#encoder) this.#emitParity(this.#encoder.poll(now), emit);
  }

  reorderTolerance(): { packets: number; ms: number } | undefined {
    const encoder = this.#encoder;
    if (!encoder || (encoder.parityShards === 0 && encoder.nextFlushTime() === undefined)) {
      return undefined;
    }
    return { packets: encoder.dataShards + encoder.parityShards, ms: this.#flushAfterMs + 2 };
  }

  onReceiveFec(packet: Packet, _datagram: Uint8Array, _now: number): Uint8Array[] {
    const fec = packet.fec!;
    if (fec.dataShards === 0) {
      this.#onReport(fec.group);
      return [];
    }
    this.#decoder ??= new FecDecoder();
    if (fec.index < fec.dataShards) {
      // The protected bytes are the datagram as sent before the FEC fields were added.
      const { fec: _fec, ...rest } = packet;
      const original = encodePacket({ ...rest, flags: packet.flags & ~FLAG.FEC });
      return this.#decoder.addData({ groupId: fec.group, index: fec.index }, original)
        .map((r) => r.payload);
    }
    return this.#decoder.addParity({
      groupId: fec.group,
      index: fec.index - fec.dataShards,
      dataCount: fec.dataShards,
      parityCount: fec.parityShards,
      payload: packet.payload.slice(),
    }).map((r) => r.payload);
  }

  onSendAck(packet: Packet, _now: number): void {
    const decoder = this.#decoder;
    if (!decoder) return;
    const { shardsAccepted, shardsMissing } = decoder.stats();
    const report = (((shardsMissing & REPORT_MASK) << 16) | (shardsAccepted & REPORT_MASK)) >>> 0;
    if (report === this.#lastReport) return;
    this.#lastReport = report;
    this.#reportsSent++;
    packet.flags |= FLAG.FEC;
    packet.fec = { group: report, index: 0, dataShards: 0, parityShards: 0 };
  }

  onLossFeedback(acked: number, lost: number, _now: number): void {
    // With parity on, the receiver's reports are the truth (repaired losses are invisible
    // here); with parity off, only the sender sees losses.
    if (this.#policy && this.#encoder?.parityShards === 0) {
      this.#policy.observe(acked, lost);
      this.#adapt();
    }
  }

  stats(): FecHookStats {
    const e = this.#encoder?.stats();
    const d = this.#decoder?.stats();
    return {
      sending: this.#encoder !== null,
      parityShards: this.#encoder?.parityShards ?? 0,
      sparseParityShards: this.#policy ? this.#lastSparseParity : this.#encoder?.parityShards ?? 0,
      dataPackets: e?.dataPackets ?? 0,
      parityPackets: e?.parityPackets ?? 0,
      dataBytes: e?.dataBytes ?? 0,
      parityBytes: e?.parityBytes ?? 0,
      partialGroups: e?.partialGroups ?? 0,
      lossEstimate: this.#policy?.lossRate ?? this.#lossEstimate,
      recoveredPackets: d?.recoveredPackets ?? 0,
      shardsReceived: d?.shardsAccepted ?? 0,
      shardsMissing: d?.shardsMissing ?? 0,
      reportsSent: this.#reportsSent,
      reportsReceived: this.#reportsReceived,
    };
  }

  #onReport(report: number): void {
    this.#reportsReceived++;
    const accepted = report & REPORT_MASK;
    const missing = report >>> 16;
    if (this.#peerAccepted >= 0) {
      const dAccepted = (accepted - this.#peerAccepted) & REPORT_MASK;
      const dMissing = (missing - this.#peerMissing) & REPORT_MASK;
      // A report older than the last one (reordered ACKs) would wrap to a huge delta: skip it.
      if (dAccepted >= 0x8000 || dMissing >= 0x8000) return;
      if (dAccepted + dMissing > 0) {
        this.#reportedAccepted += dAccepted;
        this.#reportedMissing += dMissing;
        this.#lossEstimate = this.#reportedMissing /
          (this.#reportedAccepted + this.#reportedMissing);
        if (this.#encoder && this.#encoder.parityShards > 0) {
          this.#policy?.observe(dAccepted, dMissing);
        }
      }
    }
    this.#peerAccepted = accepted;
    this.#peerMissing = missing;
    this.#adapt();
  }

  /**
   * Parity for a sparse message (adaptive only): from the peer's loss reports, or from the
   * loss our own decoder sees on the way in when that is worse. Request/response traffic
   * rarely sends the pure ACKs that carry reports, and a lossy path is usually lossy both ways.
   */
  #sparseParity(): number {
    const policy = this.#policy;
    const incoming = this.#incoming;
    if (!policy || !incoming) return 0;
    const d = this.#decoder?.stats();
    if (d) {
      const accepted = d.shardsAccepted - this.#incomingSeen.accepted;
      const missing = d.shardsMissing - this.#incomingSeen.missing;
      if (accepted + missing > 0) incoming.observe(accepted, missing);
      this.#incomingSeen = { accepted: d.shardsAccepted, missing: d.shardsMissing };
    }
    this.#lastSparseParity = Math.max(policy.sparseParityShards(), incoming.sparseParityShards());
    return this.#lastSparseParity;
  }

  #adapt(): void {
    if (this.#policy && this.#encoder) {
      this.#encoder.setParityShards(this.#policy.parityShards());
    }
  }

  #emitParity(parity: ParityShard[], emit: Emit): void {
    for (const p of parity) {
      emit(encodePacket({
        flags: FLAG.FEC,
        connectionId: this.#connectionId,
        seq: 0,
        ack: 0,
        fec: {
          group: p.groupId,
          index: p.dataCount + p.index,
          dataShards: p.dataCount,
          parityShards: p.parityCount,
        },
        payload: p.payload,
      }));
    }
  }
}
