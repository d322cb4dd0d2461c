/**
 * Reed-Solomon forward error correction for Quantum: repairs lost packets without waiting a
 * round trip.
 *
 * Data packets are grouped; each group of up to `dataShards` packets (default 10) is followed
 * by `parityShards` parity packets (default 3). The receiver rebuilds any missing data packets of
 * a group as soon as any `dataCount` shards of it are present. The payloads are opaque bytes: the
 * connection decides what a data shard holds (typically the whole encoded packet without its FEC
 * fields, so a recovered shard decodes exactly like a received packet).
 *
 * **Shard layout.** Every data shard is encoded as
 * `[length u16 BE][0 u16][check u32 BE][payload][zero padding]`, padded to the group's longest
 * payload + 8. The 8-byte prefix is never sent with data packets (the receiver derives it from the
 * payload it received); it only exists inside the RS code, so a recovered shard carries its exact
 * length and a check value over its payload, which catches garbage produced by corrupted inputs.
 * A parity shard's payload is `longest + 8` bytes.
 *
 * **Partial groups.** A group that fills slowly is closed by {@linkcode FecEncoder.poll} once it
 * is `flushAfterMs` old, with the data shards it has (sparse RPC traffic is protected too). The
 * receiver learns the group's real data count from the `dataCount` field every parity shard
 * carries; data shards carry only the group id and their index, so they can leave before the
 * group's size is known.
 *
 * Wire fields (the connection carries them in its FEC extension):
 * - data packet: `groupId` (u32), `index` (u8, 0-based position in the group);
 * - parity packet: `groupId` (u32), `index` (u8, 0-based parity number), `dataCount` (u8),
 *   `parityCount` (u8); its payload is the parity shard.
 *
 * @example
 * ```ts
 * const encoder = new FecEncoder({ dataShards: 4, parityShards: 2 });
 * const decoder = new FecDecoder();
 * const packets = [1, 2, 3, 4].map((n) => new Uint8Array(n * 10).fill(n));
 * const parity = [];
 * const tags = [];
 * for (const p of packets) {
 *   const out = encoder.add(0, p);
 *   tags.push(out.tag!);
 *   parity.push(...out.parity);
 * }
 * // Packets 1 and 2 are lost; 0, 3 and the parity arrive.
 * decoder.addData(tags[0]!, packets[0]!);
 * decoder.addData(tags[3]!, packets[3]!);
 * const recovered = decoder.addParity(parity[0]!);
 * recovered.map((r) => r.index); // [1, 2]
 * ```
 * @module
 */

import { rsEncode, rsReconstruct } from "./_rs_wasm.ts";

/** Default data shards per group. */
export const FEC_DEFAULT_DATA_SHARDS = 10;
/** Default parity shards per group. */
export const FEC_DEFAULT_PARITY_SHARDS = 3;
/** Default age (ms) after which a partly filled group is closed. */
export const FEC_DEFAULT_FLUSH_AFTER_MS = 3;
/** Default largest data payload FEC protects (bytes). */
export const FEC_DEFAULT_MAX_PAYLOAD_BYTES = 1472;
/** Bytes of the length/check prefix inside every shard. */
export const FEC_SHARD_PREFIX_BYTES = 8;
/** Reed-Solomon over GF(2^8): at most 256 shards per group. */
export const FEC_MAX_SHARDS = 256;
/** Largest encoder scratch kept after a sparse group (a small message and its parity fit). */
const SPARSE_SCRATCH_BYTES = 4096;

/** FEC fields of a data packet. */
export interface FecTag {
  /** Group id (u32, increments per group, wraps). */
  groupId: number;
  /** Position of the packet in its group (u8). */
  index: number;
}

/** A parity packet's FEC fields and payload. */
export interface ParityShard {
  /** Group id (u32). */
  groupId: number;
  /** Parity number within the group, 0-based (u8). */
  index: number;
  /** Number of data packets in the group (u8, 1..255). */
  dataCount: number;
  /** Number of parity packets in the group (u8, 1..255). */
  parityCount: number;
  /** Parity bytes: the group's longest data payload + 8. */
  payload: Uint8Array;
}

/** What {@linkcode FecEncoder.add} returns. */
export interface FecEncodeResult {
  /** FEC fields for the data packet, or `undefined` when FEC is off (0 parity shards). */
  tag: FecTag | undefined;
  /** Parity packets to send right after the data packet (non-empty when the group filled). */
  parity: ParityShard[];
  /** Parity shards the packet's group gets (so far: a flush may raise it); 0 when untagged. */
  groupParity: number;
}

/** Options for {@linkcode FecEncoder}. */
export interface FecEncoderOptions {
  /** Data shards per full group (1..255, default 10). */
  dataShards?: number;
  /** Parity shards per group (0 = FEC off, default 3). */
  parityShards?: number;
  /** Close a partly filled group once it is this old (ms, default 3). */
  flushAfterMs?: number;
  /** Largest payload accepted (bytes, default 1472). */
  maxPayloadBytes?: number;
  /** First group id (default 0). */
  firstGroupId?: number;
}

/** Encoder counters. */
export interface FecEncoderStats {
  /** Groups closed (full or flushed). */
  groups: number;
  /** Groups closed by the flush timeout before filling. */
  partialGroups: number;
  /** Data packets tagged. */
  dataPackets: number;
  /** Parity packets produced. */
  parityPackets: number;
  /** Data payload bytes tagged. */
  dataBytes: number;
  /** Parity payload bytes produced. */
  parityBytes: number;
}

function checkInteger(value: number, min: number, max: number, what: string): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`Invalid ${what}: expected an integer in [${min}, ${max}], got ${value}`);
  }
  return value;
}

/**
 * A 32-bit check value (FNV-1a style, four bytes per step) over `bytes`; not cryptographic, only
 * meant to catch garbage from corrupted reconstruction inputs.
 */
function checkValue(bytes: Uint8Array): number {
  let h = 0x811c9dc5 ^ bytes.length;
  const n = bytes.length;
  const whole = n & ~3;
  let i = 0;
  for (; i < whole; i += 4) {
    const word = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    h = Math.imul(h ^ word, 0x01000193);
    h ^= h >>> 15;
  }
  for (; i < n; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return h >>> 0;
}

/** Writes the 8-byte prefix and payload of a data shard at `offset`; the rest must be zero. */
function writeDataShard(target: Uint8Array, offset: number, payload: Uint8Array): void {
  const length = payload.length;
  const check = checkValue(payload);
  target[offset] = length >>> 8;
  target[offset + 1] = length & 0xff;
  target[offset + 2] = 0;
  target[offset + 3] = 0;
  target[offset + 4] = check >>> 24;
  target[offset + 5] = (check >>> 16) & 0xff;
  target[offset + 6] = (check >>> 8) & 0xff;
  target[offset + 7] = check & 0xff;
  target.set(payload, offset + FEC_SHARD_PREFIX_BYTES);
}

/**
 * Groups outgoing data packets and produces Reed-Solomon parity packets.
 *
 * Call {@linkcode FecEncoder.add} for every data packet (before sending it, to get its tag) and
 * {@linkcode FecEncoder.poll} from the connection's timer pass (at or after
 * {@linkcode FecEncoder.nextFlushTime}). Payloads are copied; callers may reuse their buffers.
 */
export class FecEncoder {
  readonly #dataShards: number;
  #parityShards: number;
  readonly #flushAfterMs: number;
  readonly #maxPayloadBytes: number;
  #groupId: number;
  #groupParity = 0;
  #groupStart = 0;
  #count = 0;
  #longest = 0;
  readonly #payloads: Array<Uint8Array | undefined>;
  readonly #lengths: number[];
  #scratch = new Uint8Array(0);
  #stats: FecEncoderStats = {
    groups: 0,
    partialGroups: 0,
    dataPackets: 0,
    parityPackets: 0,
    dataBytes: 0,
    parityBytes: 0,
  };

  /** @throws {RangeError} for out-of-range options */
  constructor(options: FecEncoderOptions = {}) {
    this.#dataShards = checkInteger(
      options.dataShards ?? FEC_DEFAULT_DATA_SHARDS,
      1,
      FEC_MAX_SHARDS - 1,
      "dataShards",
    );
    this.#parityShards = checkInteger(
      options.parityShards ?? FEC_DEFAULT_PARITY_SHARDS,
      0,
      FEC_MAX_SHARDS - this.#dataShards,
      "parityShards",
    );
    const flush = options.flushAfterMs ?? FEC_DEFAULT_FLUSH_AFTER_MS;
    if (!(flush >= 0) || !Number.isFinite(flush)) {
      throw new RangeError("Invalid flushAfterMs: expected a non-negative finite number");
    }
    this.#flushAfterMs = flush;
    this.#maxPayloadBytes = checkInteger(
      options.maxPayloadBytes ?? FEC_DEFAULT_MAX_PAYLOAD_BYTES,
      1,
      0xffff - FEC_SHARD_PREFIX_BYTES,
      "maxPayloadBytes",
    );
    this.#groupId = checkInteger(options.firstGroupId ?? 0, 0, 0xffffffff, "firstGroupId");
    // Allocated on first use; after a flushed (sparse) group only one packet's worth stays, so
    // idle connections hold at most ~2 KB.
    this.#payloads = new Array<Uint8Array | undefined>(this.#dataShards);
    this.#lengths = new Array<number>(this.#dataShards).fill(0);
  }

  /** Data shards per full group. */
  get dataShards(): number {
    return this.#dataShards;
  }

  /** Parity shards used for groups started from now on (0 = FEC off). */
  get parityShards(): number {
    return this.#parityShards;
  }

  /**
   * Changes the parity count (for example from {@linkcode AdaptiveFecPolicy}). The group being
   * filled keeps the count it started with.
   *
   * @throws {RangeError} when out of range
   */
  setParityShards(parityShards: number): void {
    this.#parityShards = checkInteger(
      parityShards,
      0,
      FEC_MAX_SHARDS - this.#dataShards,
      "parityShards",
    );
  }

  /** Counters since creation. */
  stats(): FecEncoderStats {
    return { ...this.#stats };
  }

  /** When {@linkcode FecEncoder.poll} should next run (ms), or `undefined` if no group is open. */
  nextFlushTime(): number | undefined {
    return this.#count === 0 ? undefined : this.#groupStart + this.#flushAfterMs;
  }

  /**
   * Adds one outgoing data packet.
   *
   * @param now current time (ms), starts the flush timer of a new group
   * @param payload the bytes to protect (copied)
   * @param minParity parity for a group this packet starts, at least (e.g. a sparse message
   *   protected although the current parity count is 0)
   * @returns the packet's FEC tag and any parity packets that are now due
   * @throws {RangeError} when the payload is empty or longer than `maxPayloadBytes`
   */
  add(now: number, payload: Uint8Array, minParity = 0): FecEncodeResult {
    if (payload.length === 0 || payload.length > this.#maxPayloadBytes) {
      throw new RangeError(
        `Cannot protect packet: payload must be 1..${this.#maxPayloadBytes} bytes, got ${payload.length}`,
      );
    }
    if (this.#count === 0) {
      const parity = Math.max(this.#parityShards, this.#checkParity(minParity));
      if (parity === 0) return { tag: undefined, parity: [], groupParity: 0 };
      this.#groupStart = now;
      this.#groupParity = parity;
    }
    const index = this.#count++;
    const slot = this.#payloads[index] ?? new Uint8Array(this.#maxPayloadBytes);
    this.#payloads[index] = slot;
    slot.set(payload);
    this.#lengths[index] = payload.length;
    if (payload.length > this.#longest) this.#longest = payload.length;
    this.#stats.dataPackets++;
    this.#stats.dataBytes += payload.length;
    const tag = { groupId: this.#groupId, index };
    const groupParity = this.#groupParity;
    const parity = this.#count === this.#dataShards ? this.#close(false) : [];
    return { tag, parity, groupParity };
  }

  /** Closes the open group if it is at least `flushAfterMs` old; returns its parity packets. */
  poll(now: number): ParityShard[] {
    // Same expression as nextFlushTime() with a 1 ns tolerance, so a timer armed for
    // nextFlushTime() flushes even when `start + (deadline − start)` rounds a hair below the
    // deadline (otherwise a timer loop could spin at one instant).
    if (this.#count === 0 || now + 1e-6 < this.#groupStart + this.#flushAfterMs) return [];
    return this.#close(true);
  }

  /**
   * Closes the open group now (for example when nothing more is queued); returns its parity
   * packets, at least `minParity` of them.
   */
  flush(minParity = 0): ParityShard[] {
    if (this.#count === 0) return [];
    this.#groupParity = Math.max(this.#groupParity, this.#checkParity(minParity));
    return this.#close(this.#count < this.#dataShards);
  }

  #checkParity(parity: number): number {
    return checkInteger(parity, 0, FEC_MAX_SHARDS - this.#dataShards, "minParity");
  }

  #close(partial: boolean): ParityShard[] {
    const dataCount = this.#count;
    const parityCount = this.#groupParity;
    const shardSize = this.#longest + FEC_SHARD_PREFIX_BYTES;
    const total = shardSize * (dataCount + parityCount);
    if (this.#scratch.length < total) {
      // A sparse group needs a few hundred bytes: a 16 KiB buffer per message was most of the
      // garbage (and GC pauses) of request/response traffic.
      this.#scratch = new Uint8Array(partial ? total : Math.max(total, 16 * 1024));
    }
    const shards = this.#scratch.subarray(0, total);
    shards.fill(0);
    for (let i = 0; i < dataCount; i++) {
      writeDataShard(shards, i * shardSize, this.#payloads[i]!.subarray(0, this.#lengths[i]!));
    }
    const groupId = this.#groupId;
    this.#groupId = (this.#groupId + 1) >>> 0;
    this.#count = 0;
    this.#longest = 0;
    if (dataCount === 1) {
      // With one data shard every Reed-Solomon parity shard equals it (each parity row of the
      // systematic Vandermonde matrix is [1]; fec_test checks this against the library). The
      // library rebuilds and inverts its matrix on every call, which dominated the cost of
      // protecting a sparse message.
      for (let j = 1; j <= parityCount; j++) shards.copyWithin(j * shardSize, 0, shardSize);
    } else {
      rsEncode(shards, dataCount, parityCount);
    }
    const parity: ParityShard[] = [];
    for (let j = 0; j < parityCount; j++) {
      const start = (dataCount + j) * shardSize;
      parity.push({
        groupId,
        index: j,
        dataCount,
        parityCount,
        payload: shards.slice(start, start + shardSize),
      });
    }
    this.#stats.groups++;
    if (partial) {
      // Release what a full group needed; keep the one slot and the small scratch a sparse
      // message reuses (~2 KB), so request/response traffic allocates nothing here per message.
      this.#stats.partialGroups++;
      this.#payloads.fill(undefined, 1);
      if (this.#scratch.length > SPARSE_SCRATCH_BYTES) this.#scratch = new Uint8Array(0);
    }
    this.#stats.parityPackets += parityCount;
    this.#stats.parityBytes += parityCount * shardSize;
    return parity;
  }
}

/** A data packet rebuilt by {@linkcode FecDecoder}. */
export interface RecoveredPacket {
  /** Group id. */
  groupId: number;
  /** Index of the packet in its group. */
  index: number;
  /** The exact bytes the sender protected. */
  payload: Uint8Array;
}

/** Options for {@linkcode FecDecoder}. */
export interface FecDecoderOptions {
  /** Groups kept open at once; the oldest is evicted beyond this (default 32). */
  maxOpenGroups?: number;
  /** Buffered shard bytes across open groups; oldest groups are evicted beyond (default 1 MiB). */
  maxBufferedBytes?: number;
  /** Largest data payload accepted (bytes, default 1472). */
  maxPayloadBytes?: number;
  /** Largest `dataCount` accepted (default 64). */
  maxDataShards?: number;
  /** Largest `parityCount` accepted (default 16). */
  maxParityShards?: number;
  /** Groups remembered after they finish, to recognise late shards (default 256: 2 KiB per decoder). */
  historyGroups?: number;
}

/** Decoder counters. */
export interface FecDecoderStats {
  /** Data packets rebuilt. */
  recoveredPackets: number;
  /** Groups in which at least one packet was rebuilt. */
  recoveredGroups: number;
  /** Groups that finished with all data present (nothing to rebuild). */
  completeGroups: number;
  /**
   * Groups evicted before they finished (limits reached while too few shards had arrived, or
   * no parity shard ever came).
   */
  evictedGroups: number;
  /**
   * Reconstructions given up: the RS call failed or the result failed the length/check test
   * even on a fresh wasm instance (some input shard was corrupted).
   */
  failedReconstructions: number;
  /** Reconstructions retried on a fresh wasm instance after a first failure. */
  reconstructRetries: number;
  /** Shards received and stored. */
  shardsAccepted: number;
  /**
   * Shards of finished groups that never arrived before the group finished: data shards that
   * were missing, and parity shards below the highest parity index seen. With
   * `shardsAccepted` this estimates the path's loss rate for {@linkcode AdaptiveFecPolicy}.
   */
  shardsMissing: number;
  /**
   * Shards dropped: for a group that already finished. Normal: once a group is complete its
   * remaining parity shards are not needed.
   */
  droppedLate: number;
  /** Shards dropped: for a group older than the remembered history. */
  droppedStale: number;
  /** Shards dropped: same group and index already present. */
  droppedDuplicate: number;
  /** Shards dropped: inconsistent with the group or malformed. */
  droppedCorrupt: number;
  /** Shards dropped: larger than the configured limits. */
  droppedOverLimit: number;
  /** Groups currently open. */
  openGroups: number;
  /** Shard bytes currently buffered. */
  bufferedBytes: number;
}

interface Group {
  id: number;
  dataCount: number; // 0 until a parity shard says
  parityCount: number;
  shardSize: number; // 0 until a parity shard says
  data: Array<Uint8Array | undefined>;
  dataPresent: number;
  parity: Array<Uint8Array | undefined>;
  parityPresent: number;
  maxParityIndex: number;
  bytes: number;
}

/** Serial-number difference a − b of two u32 ids, in (−2^31, 2^31]. */
function serialDiff(a: number, b: number): number {
  return ((a - b) | 0);
}

/**
 * Collects data and parity shards and rebuilds missing data packets.
 *
 * Memory is bounded by `maxOpenGroups` and `maxBufferedBytes`; nothing it is fed can make it
 * throw (malformed shards are dropped and counted). Feed it every FEC-tagged data packet that
 * arrives (including ones the reliability layer already has) and every parity packet; pass the
 * recovered packets to reliability as if received, but never as RTT samples or congestion
 * signals.
 */
export class FecDecoder {
  readonly #maxOpenGroups: number;
  readonly #maxBufferedBytes: number;
  readonly #maxPayloadBytes: number;
  readonly #maxDataShards: number;
  readonly #maxParityShards: number;
  readonly #history: Float64Array;
  readonly #groups = new Map<number, Group>();
  #highest: number | undefined;
  #bufferedBytes = 0;
  #stats = {
    recoveredPackets: 0,
    recoveredGroups: 0,
    completeGroups: 0,
    evictedGroups: 0,
    failedReconstructions: 0,
    reconstructRetries: 0,
    shardsAccepted: 0,
    shardsMissing: 0,
    droppedLate: 0,
    droppedStale: 0,
    droppedDuplicate: 0,
    droppedCorrupt: 0,
    droppedOverLimit: 0,
  };

  /** @throws {RangeError} for out-of-range options */
  constructor(options: FecDecoderOptions = {}) {
    this.#maxOpenGroups = checkInteger(options.maxOpenGroups ?? 32, 1, 1 << 16, "maxOpenGroups");
    this.#maxBufferedBytes = checkInteger(
      options.maxBufferedBytes ?? 1 << 20,
      1,
      2 ** 40,
      "maxBufferedBytes",
    );
    this.#maxPayloadBytes = checkInteger(
      options.maxPayloadBytes ?? FEC_DEFAULT_MAX_PAYLOAD_BYTES,
      1,
      0xffff - FEC_SHARD_PREFIX_BYTES,
      "maxPayloadBytes",
    );
    this.#maxDataShards = checkInteger(
      options.maxDataShards ?? 64,
      1,
      FEC_MAX_SHARDS - 1,
      "maxDataShards",
    );
    this.#maxParityShards = checkInteger(
      options.maxParityShards ?? 16,
      1,
      FEC_MAX_SHARDS - 1,
      "maxParityShards",
    );
    this.#history = new Float64Array(
      checkInteger(options.historyGroups ?? 256, 1, 1 << 20, "historyGroups"),
    ).fill(-1);
  }

  /** Counters since creation. */
  stats(): FecDecoderStats {
    return { ...this.#stats, openGroups: this.#groups.size, bufferedBytes: this.#bufferedBytes };
  }

  /**
   * Feeds a received data packet's FEC fields and payload (copied).
   *
   * @returns packets of the same group rebuilt thanks to this one (usually none)
   */
  addData(tag: FecTag, payload: Uint8Array): RecoveredPacket[] {
    const { groupId, index } = tag;
    if (!this.#validId(groupId) || !Number.isInteger(index) || index < 0 || index > 255) {
      this.#stats.droppedCorrupt++;
      return [];
    }
    if (payload.length === 0 || index >= this.#maxDataShards) {
      this.#stats.droppedCorrupt++;
      return [];
    }
    if (payload.length > this.#maxPayloadBytes) {
      this.#stats.droppedOverLimit++;
      return [];
    }
    const group = this.#groupFor(groupId);
    if (group === undefined) return [];
    if (group.dataCount !== 0) {
      if (index >= group.dataCount || payload.length + FEC_SHARD_PREFIX_BYTES > group.shardSize) {
        this.#stats.droppedCorrupt++;
        return this.#dropIfEmpty(group);
      }
    }
    if (group.data[index] !== undefined) {
      this.#stats.droppedDuplicate++;
      return [];
    }
    group.data[index] = payload.slice();
    group.dataPresent++;
    this.#account(group, payload.length);
    return this.#progress(group);
  }

  /**
   * Feeds a received parity packet.
   *
   * @returns data packets of its group rebuilt now (possibly none)
   */
  addParity(shard: ParityShard): RecoveredPacket[] {
    const { groupId, index, dataCount, parityCount, payload } = shard;
    if (
      !this.#validId(groupId) || !Number.isInteger(index) || !Number.isInteger(dataCount) ||
      !Number.isInteger(parityCount) || dataCount < 1 || parityCount < 1 || index < 0 ||
      index >= parityCount || dataCount + parityCount > FEC_MAX_SHARDS ||
      payload.length <= FEC_SHARD_PREFIX_BYTES
    ) {
      this.#stats.droppedCorrupt++;
      return [];
    }
    if (
      dataCount > this.#maxDataShards || parityCount > this.#maxParityShards ||
      payload.length > this.#maxPayloadBytes + FEC_SHARD_PREFIX_BYTES
    ) {
      this.#stats.droppedOverLimit++;
      return [];
    }
    const group = this.#groupFor(groupId);
    if (group === undefined) return [];
    if (group.dataCount === 0) {
      // First parity shard: it fixes the group's geometry; stored data must fit it.
      let fits = true;
      for (let i = 0; i < group.data.length && fits; i++) {
        const data = group.data[i];
        if (data === undefined) continue;
        if (i >= dataCount || data.length + FEC_SHARD_PREFIX_BYTES > payload.length) fits = false;
      }
      if (!fits) {
        this.#stats.droppedCorrupt++;
        return [];
      }
      group.dataCount = dataCount;
      group.parityCount = parityCount;
      group.shardSize = payload.length;
    } else if (
      group.dataCount !== dataCount || group.parityCount !== parityCount ||
      group.shardSize !== payload.length
    ) {
      this.#stats.droppedCorrupt++;
      return [];
    }
    if (group.parity[index] !== undefined) {
      this.#stats.droppedDuplicate++;
      return [];
    }
    group.parity[index] = payload.slice();
    group.parityPresent++;
    if (index > group.maxParityIndex) group.maxParityIndex = index;
    this.#account(group, payload.length);
    return this.#progress(group);
  }

  #validId(groupId: number): boolean {
    return Number.isInteger(groupId) && groupId >= 0 && groupId <= 0xffffffff;
  }

  #account(group: Group, bytes: number): void {
    group.bytes += bytes;
    this.#bufferedBytes += bytes;
    this.#stats.shardsAccepted++;
    if (this.#highest === undefined || serialDiff(group.id, this.#highest) > 0) {
      // A lone shard far ahead (a corrupted id) must not make every real group look stale:
      // only a group with two shards moves the horizon.
      if (group.dataPresent + group.parityPresent >= 2 || this.#highest === undefined) {
        this.#highest = group.id;
      }
    }
    this.#enforceLimits(group);
  }

  /** Finds or opens the group for a shard; `undefined` when the shard must be dropped. */
  #groupFor(groupId: number): Group | undefined {
    const existing = this.#groups.get(groupId);
    if (existing !== undefined) return existing;
    if (this.#history[groupId % this.#history.length] === groupId) {
      this.#stats.droppedLate++;
      return undefined;
    }
    if (
      this.#highest !== undefined &&
      serialDiff(groupId, this.#highest) < -this.#history.length
    ) {
      this.#stats.droppedStale++;
      return undefined;
    }
    const group: Group = {
      id: groupId,
      dataCount: 0,
      parityCount: 0,
      shardSize: 0,
      data: [],
      dataPresent: 0,
      parity: [],
      parityPresent: 0,
      maxParityIndex: -1,
      bytes: 0,
    };
    this.#groups.set(groupId, group);
    return group;
  }

  #enforceLimits(current: Group): void {
    while (
      this.#groups.size > this.#maxOpenGroups || this.#bufferedBytes > this.#maxBufferedBytes
    ) {
      const oldest = this.#groups.values().next().value as Group | undefined;
      if (oldest === undefined || (oldest === current && this.#groups.size === 1)) break;
      const victim = oldest === current ? [...this.#groups.values()][1]! : oldest;
      this.#stats.evictedGroups++;
      this.#finish(victim);
    }
  }

  #dropIfEmpty(group: Group): RecoveredPacket[] {
    if (group.dataPresent + group.parityPresent === 0) this.#groups.delete(group.id);
    return [];
  }

  #finish(group: Group): void {
    if (group.dataCount !== 0) {
      this.#stats.shardsMissing += group.dataCount - group.dataPresent +
        group.maxParityIndex + 1 - group.parityPresent;
    }
    this.#bufferedBytes -= group.bytes;
    this.#groups.delete(group.id);
    this.#history[group.id % this.#history.length] = group.id;
  }

  #progress(group: Group): RecoveredPacket[] {
    if (group.dataCount === 0) return [];
    if (group.dataPresent === group.dataCount) {
      this.#stats.completeGroups++;
      this.#finish(group);
      return [];
    }
    if (group.dataPresent + group.parityPresent < group.dataCount) return [];
    const recovered = this.#reconstruct(group);
    this.#finish(group);
    return recovered;
  }

  #reconstruct(group: Group): RecoveredPacket[] {
    // First on the shared wasm instance; if that fails or does not verify, once more on a fresh
    // instance, so a damaged instance cannot be mistaken for corrupted input.
    for (const fresh of [false, true]) {
      const recovered = this.#tryReconstruct(group, fresh);
      if (recovered !== undefined) {
        this.#stats.recoveredGroups++;
        this.#stats.recoveredPackets += recovered.length;
        return recovered;
      }
      if (!fresh) this.#stats.reconstructRetries++;
    }
    this.#stats.failedReconstructions++;
    return [];
  }

  #tryReconstruct(group: Group, fresh: boolean): RecoveredPacket[] | undefined {
    const { dataCount, parityCount, shardSize } = group;
    const shards = new Uint8Array(shardSize * (dataCount + parityCount));
    const present: boolean[] = [];
    for (let i = 0; i < dataCount; i++) {
      const data = group.data[i];
      present.push(data !== undefined);
      if (data !== undefined) writeDataShard(shards, i * shardSize, data);
    }
    for (let j = 0; j < parityCount; j++) {
      const parity = group.parity[j];
      present.push(parity !== undefined);
      if (parity !== undefined) shards.set(parity, (dataCount + j) * shardSize);
    }
    if (rsReconstruct(shards, dataCount, parityCount, present, { fresh }) !== 0) return undefined;
    const recovered: RecoveredPacket[] = [];
    for (let i = 0; i < dataCount; i++) {
      if (present[i]) continue;
      const offset = i * shardSize;
      const length = (shards[offset]! << 8) | shards[offset + 1]!;
      const check = ((shards[offset + 4]! << 24) | (shards[offset + 5]! << 16) |
        (shards[offset + 6]! << 8) | shards[offset + 7]!) >>> 0;
      const end = offset + FEC_SHARD_PREFIX_BYTES + length;
      if (
        length === 0 || end > offset + shardSize || shards[offset + 2] !== 0 ||
        shards[offset + 3] !== 0
      ) {
        return undefined;
      }
      for (let k = end; k < offset + shardSize; k++) if (shards[k] !== 0) return undefined;
      const payload = shards.slice(offset + FEC_SHARD_PREFIX_BYTES, end);
      // A mismatch means some input shard was corrupted: the group's output is untrustworthy.
      if (checkValue(payload) !== check) return undefined;
      recovered.push({ groupId: group.id, index: i, payload });
    }
    return recovered;
  }
}

/** Options for {@linkcode AdaptiveFecPolicy}. */
export interface AdaptiveFecPolicyOptions {
  /** Data shards per group the policy plans for (default 10). */
  dataShards?: number;
  /** Fewest parity shards (default 0: FEC off on a clean path). */
  minParity?: number;
  /** Most parity shards (default 4). */
  maxParity?: number;
  /**
   * Acceptable fraction of data packets FEC cannot repair (default 1e-4): the target for sparse
   * messages ({@linkcode AdaptiveFecPolicy.sparseParityShards}) and the floor for full groups.
   */
  targetResidualLoss?: number;
  /**
   * Share of the losses full groups (bulk data) may leave to retransmission (default 0.25).
   * Parity beyond the loss rate costs link capacity a bulk transfer needs, while a loss FEC
   * misses costs it only a retransmission; so full groups get parity near the loss rate
   * (10+1 at 1–2%, 10+2 at 5%), not the near-lossless level sparse messages get.
   */
  retransmitShare?: number;
  /** Packets over which the loss estimate averages (EWMA time constant, default 1000). */
  windowPackets?: number;
  /** Loss rate assumed before any observation (default 0.01). */
  initialLossRate?: number;
}

/**
 * Probability that a data packet is lost and cannot be rebuilt, for RS(k, p) under independent
 * random loss `q`: Σ_{j>p} C(n, j) q^j (1−q)^(n−j) · j/n with n = k + p.
 */
export function residualLoss(dataShards: number, parityShards: number, lossRate: number): number {
  const n = dataShards + parityShards;
  const q = Math.min(Math.max(lossRate, 0), 1);
  let sum = 0;
  let binom = 1; // C(n, j), built incrementally
  for (let j = 0; j <= n; j++) {
    if (j > 0) binom = (binom * (n - j + 1)) / j;
    if (j > parityShards) sum += binom * q ** j * (1 - q) ** (n - j) * (j / n);
  }
  return sum;
}

/**
 * Chooses the parity count from the measured loss rate: the fewest parity shards whose residual
 * loss ({@linkcode residualLoss}) meets the target, so a clean path carries no parity and a lossy
 * one gets up to `maxParity`.
 *
 * Feed it observations of packets that reached the receiver and packets that did not. With FEC
 * on, losses repaired by FEC are invisible to the sender's ACK-based loss detection, so the
 * observations should come from the receiver (the FEC decoder's `shardsAccepted` and
 * `shardsMissing` deltas, reported back in ACKs) or from counting lost parity packets too.
 *
 * @example
 * ```ts
 * const policy = new AdaptiveFecPolicy();
 * policy.observe(990, 10); // 1% loss
 * encoder.setParityShards(policy.parityShards());
 * ```
 */
export class AdaptiveFecPolicy {
  readonly #dataShards: number;
  readonly #minParity: number;
  readonly #maxParity: number;
  readonly #target: number;
  readonly #retransmitShare: number;
  readonly #window: number;
  #lossRate: number;

  /** @throws {RangeError} for out-of-range options */
  constructor(options: AdaptiveFecPolicyOptions = {}) {
    this.#dataShards = checkInteger(
      options.dataShards ?? FEC_DEFAULT_DATA_SHARDS,
      1,
      FEC_MAX_SHARDS - 1,
      "dataShards",
    );
    this.#minParity = checkInteger(options.minParity ?? 0, 0, 255, "minParity");
    this.#maxParity = checkInteger(
      options.maxParity ?? 4,
      this.#minParity,
      FEC_MAX_SHARDS - this.#dataShards,
      "maxParity",
    );
    const target = options.targetResidualLoss ?? 1e-4;
    if (!(target > 0 && target < 1)) {
      throw new RangeError("Invalid targetResidualLoss: expected a number in (0, 1)");
    }
    this.#target = target;
    const share = options.retransmitShare ?? 0.25;
    if (!(share >= 0 && share < 1)) {
      throw new RangeError("Invalid retransmitShare: expected a number in [0, 1)");
    }
    this.#retransmitShare = share;
    const window = options.windowPackets ?? 1000;
    if (!(window >= 1) || !Number.isFinite(window)) {
      throw new RangeError("Invalid windowPackets: expected a finite number >= 1");
    }
    this.#window = window;
    const initial = options.initialLossRate ?? 0.01;
    if (!(initial >= 0 && initial <= 1)) {
      throw new RangeError("Invalid initialLossRate: expected a number in [0, 1]");
    }
    this.#lossRate = initial;
  }

  /** Current loss estimate (fraction of packets). */
  get lossRate(): number {
    return this.#lossRate;
  }

  /**
   * Adds an observation: `delivered` packets arrived, `lost` did not.
   *
   * @throws {RangeError} for negative or non-finite counts
   */
  observe(delivered: number, lost: number): void {
    if (!(delivered >= 0) || !(lost >= 0) || !Number.isFinite(delivered + lost)) {
      throw new RangeError("Cannot observe loss: counts must be non-negative and finite");
    }
    const n = delivered + lost;
    if (n === 0) return;
    const keep = (1 - 1 / this.#window) ** n;
    this.#lossRate = this.#lossRate * keep + (lost / n) * (1 - keep);
  }

  /**
   * Parity shards for the next full group: the fewest that leave at most `retransmitShare` of
   * the losses (and at least `targetResidualLoss`) unrepaired.
   */
  parityShards(): number {
    const target = Math.max(this.#target, this.#retransmitShare * this.#lossRate);
    return this.#fewestParity(this.#dataShards, target, this.#minParity);
  }

  /**
   * Parity shards for a sparse message (a group of one packet closed because nothing more is
   * queued): at least 1, even on a path that looked clean, so the first loss of a request /
   * response exchange is repaired at once instead of after a retransmission timeout. Parity is
   * cheap there: the link is idle.
   */
  sparseParityShards(): number {
    return this.#fewestParity(1, this.#target, Math.max(1, this.#minParity));
  }

  #fewestParity(dataShards: number, target: number, min: number): number {
    for (let p = min; p < this.#maxParity; p++) {
      if (residualLoss(dataShards, p, this.#lossRate) <= target) return p;
    }
    return Math.max(min, this.#maxParity);
  }
}
