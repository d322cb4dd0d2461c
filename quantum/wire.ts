/**
 * The Quantum wire format (see PROTOCOL.md): a 32-byte fixed header, extensions signalled by
 * flags, the payload and a CRC-32C trailer. Decoding never throws: garbage yields a
 * {@linkcode DecodeFailure} with a reason that the endpoint counts and drops.
 *
 * @example
 * ```ts
 * const bytes = encodePacket({
 *   flags: FLAG.ACK,
 *   connectionId: "01890a5d-ac96-774b-bcce-b302099a8057",
 *   seq: 1,
 *   ack: 1,
 *   ackInfo: { window: 64, ackDelayMicros: 0, sack: [] },
 *   payload: new Uint8Array(0),
 * });
 * const result = decodePacket(bytes);
 * if (result.ok) console.log(result.packet.seq);
 * ```
 * @module
 */

/** "QNTM". */
export const MAGIC = 0x514e544d;
/** Protocol version carried in byte 4. */
export const VERSION = 1;
/** Fixed header size in bytes. */
export const HEADER_SIZE = 32;
/** CRC-32C trailer size in bytes. */
export const CHECKSUM_SIZE = 4;
/** Maximum SACK blocks in one ACK extension. */
export const MAX_SACK_BLOCKS = 8;
/** Maximum cookie length in a handshake extension. */
export const MAX_COOKIE_SIZE = 32;
/** Largest datagram Quantum sends (fits the IPv6 minimum MTU of 1280 minus IP/UDP headers). */
export const MAX_DATAGRAM_SIZE = 1232;
/** Largest payload of a data packet: room for the header, cookie echo, full ACK extension, FEC. */
export const MAX_PAYLOAD_SIZE = 1088;

/** Flag bits (byte 5). */
export const FLAG = {
  /** Opens a connection (client hello; with ACK: server hello carrying a cookie). */
  SYN: 0x01,
  /** The ack field and the ACK extension are valid. */
  ACK: 0x02,
  /** Last sequence number of the sender's stream (consumes one sequence number). */
  FIN: 0x04,
  /** Abort: the connection is gone. */
  RST: 0x08,
  /** The FEC extension is present (see PROTOCOL.md; handled by a datagram hook). */
  FEC: 0x10,
  /** Acknowledge immediately (ping, keepalive, window probe, end of a burst). */
  PSH: 0x20,
  /** The handshake extension is present on a non-SYN packet (client cookie echo). */
  URG: 0x40,
  /** Reserved for ECN echo; sent as 0, ignored on receipt. */
  ECE: 0x80,
} as const;

/** Handshake extension (present with SYN or URG). */
export interface HandshakeInfo {
  /** The sender's maximum payload size in bytes. */
  maxPayload: number;
  /** The sender's initial receive window in packets. */
  window: number;
  /** Stateless cookie: empty in a client SYN, set by the server, echoed by the client. */
  cookie: Uint8Array;
}

/** ACK extension (present with ACK). */
export interface AckInfo {
  /** Receive window in packets beyond the cumulative ack. */
  window: number;
  /** How long the receiver held this ACK, in microseconds (saturates at 65535). */
  ackDelayMicros: number;
  /** Up to 8 [start, end) ranges received above the cumulative ack; newest first. */
  sack: Array<readonly [number, number]>;
}

/** FEC extension (present with FEC); see PROTOCOL.md. */
export interface FecInfo {
  /** FEC group id. */
  group: number;
  /** Shard index in the group: < dataShards for data, else parity. */
  index: number;
  /** Data shards per group. */
  dataShards: number;
  /** Parity shards per group. */
  parityShards: number;
}

/** A decoded (or to-be-encoded) packet. */
export interface Packet {
  /** Bitwise OR of {@linkcode FLAG} values. */
  flags: number;
  /** UUID string of the connection (canonical lower-case form). */
  connectionId: string;
  /** Sequence number (u32). */
  seq: number;
  /** Cumulative ack: the next sequence number the sender expects (u32). */
  ack: number;
  /** Present iff SYN or URG is set. */
  handshake?: HandshakeInfo;
  /** Present iff ACK is set. */
  ackInfo?: AckInfo;
  /** Present iff FEC is set. */
  fec?: FecInfo;
  /** Payload bytes (a view into the decoded datagram). */
  payload: Uint8Array;
}

/** Why a datagram was rejected. */
export type DecodeError =
  /** Shorter than header + checksum, or an extension runs past the end. */
  | "truncated"
  /** First four bytes are not "QNTM". */
  | "bad_magic"
  /** Version byte is not 1. */
  | "bad_version"
  /** CRC-32C trailer does not match. */
  | "bad_checksum"
  /** Header payload length disagrees with the datagram length. */
  | "length_mismatch"
  /** More than 8 SACK blocks or an empty/inverted block. */
  | "bad_sack"
  /** Handshake extension cookie longer than 32 bytes. */
  | "bad_handshake";

/** Result of {@linkcode decodePacket}. */
export type DecodeResult =
  | { ok: true; packet: Packet }
  | DecodeFailure;

/** A datagram that could not be decoded. */
export interface DecodeFailure {
  /** Always false. */
  ok: false;
  /** Why the datagram was rejected. */
  reason: DecodeError;
}

/** Slicing-by-8 tables: table k maps a byte to its CRC contribution k bytes further on. */
const CRC_TABLE = (() => {
  const table = new Uint32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  for (let k = 1; k < 8; k++) {
    for (let n = 0; n < 256; n++) {
      const prev = table[(k - 1) * 256 + n]!;
      table[k * 256 + n] = (prev >>> 8) ^ table[prev & 0xff]!;
    }
  }
  return table;
})();

/** True on little-endian hosts (all Deno targets), where 4 bytes read as one int32 in order. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** CRC-32C (Castagnoli) of `bytes`; `crc32c("123456789")` is `0xe3069283`. */
export function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  let i = 0;
  const whole = bytes.length - (bytes.length % 8);
  if (LITTLE_ENDIAN && (bytes.byteOffset & 3) === 0) {
    // Aligned (datagrams always are): two int32 loads per 8 bytes instead of eight byte loads.
    const words = new Int32Array(bytes.buffer, bytes.byteOffset, whole >>> 2);
    for (let w = 0; w < words.length; w += 2) crc = crcOf8(crc ^ words[w]!, words[w + 1]!);
    i = whole;
  }
  for (; i < whole; i += 8) {
    crc = crcOf8(crc ^ littleEndian32(bytes, i), littleEndian32(bytes, i + 4));
  }
  for (; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** Slicing-by-8 step: the CRC after 8 bytes, given as two little-endian words (the first XORed with the CRC). */
function crcOf8(one: number, two: number): number {
  const t = CRC_TABLE;
  return t[1792 + (one & 0xff)]! ^ t[1536 + ((one >>> 8) & 0xff)]! ^
    t[1280 + ((one >>> 16) & 0xff)]! ^ t[1024 + (one >>> 24)]! ^ t[768 + (two & 0xff)]! ^
    t[512 + ((two >>> 8) & 0xff)]! ^ t[256 + ((two >>> 16) & 0xff)]! ^ t[two >>> 24]!;
}

function littleEndian32(bytes: Uint8Array, i: number): number {
  return bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Canonical UUID string of 16 bytes at `offset` (no validation of version bits). */
export function uuidFromBytes(bytes: Uint8Array, offset = 0): string {
  // Every packet of a connection carries the same id: reuse the last string (no 20 concats).
  let same = lastDecodedUuid !== "";
  for (let i = 0; same && i < 16; i++) same = bytes[offset + i] === lastDecodedBytes[i];
  if (same) return lastDecodedUuid;
  let s = "";
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) s += "-";
    s += HEX[bytes[offset + i]!];
  }
  lastDecodedBytes.set(bytes.subarray(offset, offset + 16));
  lastDecodedUuid = s;
  return s;
}

let lastDecodedUuid = "";
const lastDecodedBytes = new Uint8Array(16);

/**
 * Write the 16 bytes of a UUID string into `target` at `offset`.
 * @throws {TypeError} when `id` is not a UUID string
 */
export function uuidToBytes<T extends Uint8Array>(
  id: string,
  target: T = new Uint8Array(16) as T,
  offset = 0,
): T {
  if (id !== lastUuid) {
    // Every packet of a connection encodes the same id: parse it once.
    const hex = id.replaceAll("-", "");
    if (!/^[0-9a-fA-F]{32}$/.test(hex)) {
      throw new TypeError("Invalid connection id: expected a UUID");
    }
    const bytes = new Uint8Array(16);
    for (let i = 0; i < 16; i++) bytes[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
    lastUuid = id;
    lastUuidBytes = bytes;
  }
  target.set(lastUuidBytes, offset);
  return target;
}

let lastUuid = "";
let lastUuidBytes = new Uint8Array(16);

/** True when a UUID string has version 7 and the RFC 9562 variant. */
export function isUuidV7(id: string): boolean {
  return id.length === 36 && id[14] === "7" && "89ab".includes(id[19]!);
}

/** Bytes {@linkcode encodePacket} produces for `packet`. */
export function packetByteLength(packet: Packet): number {
  let size = HEADER_SIZE + CHECKSUM_SIZE + packet.payload.length;
  if (packet.flags & (FLAG.SYN | FLAG.URG)) size += 7 + (packet.handshake?.cookie.length ?? 0);
  if (packet.flags & FLAG.ACK) size += 7 + 8 * (packet.ackInfo?.sack.length ?? 0);
  if (packet.flags & FLAG.FEC) size += 8;
  return size;
}

/**
 * Encode a packet into a new datagram.
 * @throws {RangeError} when a field is out of range (payload > 65535 bytes, > 8 SACK blocks,
 *   cookie > 32 bytes, sequence numbers outside u32)
 * @throws {TypeError} when an extension its flags require is missing
 */
export function encodePacket(packet: Packet): Uint8Array {
  const out = new Uint8Array(packetByteLength(packet));
  encodePacketInto(packet, out);
  return out;
}

/**
 * Encode a packet into `target` (e.g. a send slot, saving an allocation and a copy per packet);
 * returns the datagram's length, {@linkcode packetByteLength}. Same errors as
 * {@linkcode encodePacket}, plus a RangeError when `target` is too small.
 */
export function encodePacketInto(packet: Packet, target: Uint8Array): number {
  const { flags, payload } = packet;
  if (payload.length > 0xffff) throw new RangeError("Payload exceeds 65535 bytes");
  checkU32(packet.seq, "seq");
  checkU32(packet.ack, "ack");
  const length = packetByteLength(packet);
  if (target.length < length) throw new RangeError("Target too small for the packet");
  const out = target;
  const view = new DataView(out.buffer, out.byteOffset, length);
  view.setUint32(0, MAGIC);
  out[4] = VERSION;
  out[5] = flags & 0xff;
  uuidToBytes(packet.connectionId, out, 6);
  view.setUint32(22, packet.seq);
  view.setUint32(26, packet.ack);
  view.setUint16(30, payload.length);
  let offset = HEADER_SIZE;
  if (flags & (FLAG.SYN | FLAG.URG)) {
    const hs = packet.handshake;
    if (!hs) throw new TypeError("SYN or URG packet needs a handshake extension");
    if (hs.cookie.length > MAX_COOKIE_SIZE) throw new RangeError("Cookie exceeds 32 bytes");
    view.setUint16(offset, hs.maxPayload);
    view.setUint32(offset + 2, hs.window);
    out[offset + 6] = hs.cookie.length;
    out.set(hs.cookie, offset + 7);
    offset += 7 + hs.cookie.length;
  }
  if (flags & FLAG.ACK) {
    const info = packet.ackInfo;
    if (!info) throw new TypeError("ACK packet needs an ACK extension");
    if (info.sack.length > MAX_SACK_BLOCKS) throw new RangeError("More than 8 SACK blocks");
    view.setUint32(offset, info.window);
    view.setUint16(offset + 4, Math.min(0xffff, Math.max(0, Math.round(info.ackDelayMicros))));
    out[offset + 6] = info.sack.length;
    offset += 7;
    for (const [start, end] of info.sack) {
      checkU32(start, "sack start");
      checkU32(end, "sack end");
      view.setUint32(offset, start);
      view.setUint32(offset + 4, end);
      offset += 8;
    }
  }
  if (flags & FLAG.FEC) {
    const fec = packet.fec;
    if (!fec) throw new TypeError("FEC packet needs an FEC extension");
    view.setUint32(offset, fec.group);
    out[offset + 4] = fec.index;
    out[offset + 5] = fec.dataShards;
    out[offset + 6] = fec.parityShards;
    out[offset + 7] = 0;
    offset += 8;
  }
  out.set(payload, offset);
  offset += payload.length;
  view.setUint32(offset, crc32c(out.subarray(0, offset)));
  return length;
}

/** Decode a datagram. Never throws; the payload is a view into `bytes`. */
export function decodePacket(bytes: Uint8Array): DecodeResult {
  const length = bytes.length;
  if (length < HEADER_SIZE + CHECKSUM_SIZE) return fail("truncated");
  const view = new DataView(bytes.buffer, bytes.byteOffset, length);
  if (view.getUint32(0) !== MAGIC) return fail("bad_magic");
  if (bytes[4] !== VERSION) return fail("bad_version");
  const body = length - CHECKSUM_SIZE;
  if (crc32c(bytes.subarray(0, body)) !== view.getUint32(body)) return fail("bad_checksum");
  const flags = bytes[5]!;
  const packet: Packet = {
    flags,
    connectionId: uuidFromBytes(bytes, 6),
    seq: view.getUint32(22),
    ack: view.getUint32(26),
    payload: EMPTY,
  };
  const payloadLength = view.getUint16(30);
  let offset = HEADER_SIZE;
  if (flags & (FLAG.SYN | FLAG.URG)) {
    if (offset + 7 > body) return fail("truncated");
    const cookieLength = bytes[offset + 6]!;
    if (cookieLength > MAX_COOKIE_SIZE) return fail("bad_handshake");
    if (offset + 7 + cookieLength > body) return fail("truncated");
    packet.handshake = {
      maxPayload: view.getUint16(offset),
      window: view.getUint32(offset + 2),
      cookie: bytes.subarray(offset + 7, offset + 7 + cookieLength),
    };
    offset += 7 + cookieLength;
  }
  if (flags & FLAG.ACK) {
    if (offset + 7 > body) return fail("truncated");
    const count = bytes[offset + 6]!;
    if (count > MAX_SACK_BLOCKS) return fail("bad_sack");
    if (offset + 7 + count * 8 > body) return fail("truncated");
    const sack: Array<readonly [number, number]> = [];
    for (let i = 0; i < count; i++) {
      const start = view.getUint32(offset + 7 + i * 8);
      const end = view.getUint32(offset + 11 + i * 8);
      if (end <= start) return fail("bad_sack");
      sack.push([start, end]);
    }
    packet.ackInfo = {
      window: view.getUint32(offset),
      ackDelayMicros: view.getUint16(offset + 4),
      sack,
    };
    offset += 7 + count * 8;
  }
  if (flags & FLAG.FEC) {
    if (offset + 8 > body) return fail("truncated");
    packet.fec = {
      group: view.getUint32(offset),
      index: bytes[offset + 4]!,
      dataShards: bytes[offset + 5]!,
      parityShards: bytes[offset + 6]!,
    };
    offset += 8;
  }
  if (offset + payloadLength !== body) return fail("length_mismatch");
  packet.payload = bytes.subarray(offset, body);
  return { ok: true, packet };
}

const EMPTY = new Uint8Array(0);

function fail(reason: DecodeError): DecodeFailure {
  return { ok: false, reason };
}

function checkU32(value: number, field: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`Invalid ${field}: expected an unsigned 32-bit integer`);
  }
}
