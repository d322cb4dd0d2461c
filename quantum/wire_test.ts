import assert from "node:assert/strict";
import { Random } from "./_random.ts";
import {
  crc32c,
  decodePacket,
  encodePacket,
  encodePacketInto,
  FLAG,
  HEADER_SIZE,
  MAX_DATAGRAM_SIZE,
  MAX_PAYLOAD_SIZE,
  type Packet,
  packetByteLength,
  uuidFromBytes,
  uuidToBytes,
} from "./wire.ts";

const protocol = await Deno.readTextFile(new URL("./PROTOCOL.md", import.meta.url));

function blocks(kind: string): Array<Record<string, unknown>> {
  const pattern = new RegExp("```json " + kind + "\\n([^`]+)```", "g");
  return [...protocol.matchAll(pattern)].map((m) => JSON.parse(m[1]!));
}

const fromHex = (hex: string) => Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

interface JsonPacket {
  flags: number;
  connectionId: string;
  seq: number;
  ack: number;
  handshake?: { maxPayload: number; window: number; cookie: string };
  ackInfo?: Packet["ackInfo"];
  fec?: Packet["fec"];
  payload: string;
}

function fromJson(p: JsonPacket): Packet {
  return {
    ...p,
    ...(p.handshake ? { handshake: { ...p.handshake, cookie: fromHex(p.handshake.cookie) } } : {}),
    payload: fromHex(p.payload),
  } as Packet;
}

function toJson(p: Packet): JsonPacket {
  const out: JsonPacket = { ...p, payload: toHex(p.payload) } as unknown as JsonPacket;
  if (p.handshake) out.handshake = { ...p.handshake, cookie: toHex(p.handshake.cookie) };
  return out;
}

Deno.test("PROTOCOL.md holds valid and invalid test vectors", () => {
  assert.ok(blocks("vector").length >= 7);
  assert.ok(blocks("invalid").length >= 9);
});

for (const vector of blocks("vector")) {
  Deno.test(`encodePacket() produces the PROTOCOL.md bytes for "${vector.name}"`, () => {
    const packet = fromJson(vector.packet as JsonPacket);
    const bytes = encodePacket(packet);
    assert.equal(toHex(bytes), vector.hex);
    assert.equal(bytes.length, packetByteLength(packet));
  });
  Deno.test(`decodePacket() reads the PROTOCOL.md bytes of "${vector.name}"`, () => {
    const result = decodePacket(fromHex(vector.hex as string));
    assert.ok(result.ok, JSON.stringify(result));
    assert.deepEqual(toJson(result.packet), vector.packet);
  });
}

for (const vector of blocks("invalid")) {
  Deno.test(`decodePacket() rejects "${vector.name}" as ${vector.error}`, () => {
    assert.deepEqual(decodePacket(fromHex(vector.hex as string)), {
      ok: false,
      reason: vector.error,
    });
  });
}

Deno.test("the fixed header puts every field at the offset DESIGN.md names", () => {
  const bytes = encodePacket({
    flags: FLAG.ACK | FLAG.FIN,
    connectionId: "01890a5d-ac96-774b-bcce-b302099a8057",
    seq: 0x01020304,
    ack: 0x0a0b0c0d,
    ackInfo: { window: 7, ackDelayMicros: 0, sack: [] },
    payload: Uint8Array.of(9, 9, 9),
  });
  assert.deepEqual([...bytes.subarray(0, 4)], [0x51, 0x4e, 0x54, 0x4d]);
  assert.equal(bytes[4], 1);
  assert.equal(bytes[5], 0x06);
  assert.equal(toHex(bytes.subarray(6, 22)), "01890a5dac96774bbcceb302099a8057");
  assert.deepEqual([...bytes.subarray(22, 26)], [1, 2, 3, 4]);
  assert.deepEqual([...bytes.subarray(26, 30)], [0x0a, 0x0b, 0x0c, 0x0d]);
  assert.deepEqual([...bytes.subarray(30, 32)], [0, 3]);
  assert.equal(bytes.length, HEADER_SIZE + 7 + 3 + 4);
});

Deno.test("crc32c() is the same on aligned (word) and unaligned (byte) input of any length", () => {
  const backing = new Uint8Array(1300 + 4).map((_, i) => (i * 167 + 13) & 0xff);
  for (let length = 0; length <= 1300; length += length < 40 ? 1 : 97) {
    const aligned = new Uint8Array(length);
    aligned.set(backing.subarray(1, 1 + length));
    const unaligned = backing.subarray(1, 1 + length); // byteOffset 1: the byte-wise loop
    assert.equal(crc32c(aligned), crc32c(unaligned), `length ${length}`);
  }
  const check = new Uint8Array(12);
  check.set(new TextEncoder().encode("123456789"), 1);
  assert.equal(crc32c(check.subarray(1, 10)), 0xe3069283);
});

Deno.test("crc32c() matches the CRC-32C check value", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
});

Deno.test("a full data packet with 8 SACK blocks and FEC fits the maximum datagram", () => {
  const packet: Packet = {
    flags: FLAG.ACK | FLAG.FEC | FLAG.URG,
    connectionId: "01890a5d-ac96-774b-bcce-b302099a8057",
    seq: 1,
    ack: 1,
    handshake: { maxPayload: 1100, window: 1, cookie: new Uint8Array(20) },
    ackInfo: {
      window: 1,
      ackDelayMicros: 1,
      sack: Array.from({ length: 8 }, (_, i) => [i * 2 + 2, i * 2 + 3] as const),
    },
    fec: { group: 1, index: 0, dataShards: 10, parityShards: 3 },
    payload: new Uint8Array(MAX_PAYLOAD_SIZE),
  };
  assert.ok(packetByteLength(packet) <= MAX_DATAGRAM_SIZE);
});

Deno.test("encodePacket() rejects out-of-range fields with RangeError", () => {
  const base: Packet = {
    flags: FLAG.ACK,
    connectionId: "01890a5d-ac96-774b-bcce-b302099a8057",
    seq: 1,
    ack: 1,
    ackInfo: { window: 1, ackDelayMicros: 0, sack: [] },
    payload: new Uint8Array(0),
  };
  assert.throws(() => encodePacket({ ...base, seq: -1 }), RangeError);
  assert.throws(() => encodePacket({ ...base, ack: 2 ** 32 }), RangeError);
  assert.throws(
    () =>
      encodePacket({
        ...base,
        ackInfo: { window: 1, ackDelayMicros: 0, sack: Array(9).fill([1, 2]) },
      }),
    RangeError,
  );
  assert.throws(() => encodePacket({ ...base, flags: FLAG.SYN }), TypeError);
});

Deno.test("decodePacket() round-trips random packets and never throws on mutations", () => {
  const random = new Random(42);
  for (let i = 0; i < 3000; i++) {
    const flags = random.int(256) & ~FLAG.ECE;
    const sackCount = random.int(9);
    const packet: Packet = {
      flags,
      connectionId: "01890a5d-ac96-774b-bcce-b302099a8057",
      seq: random.int(2 ** 32),
      ack: random.int(2 ** 32),
      payload: random.fill(new Uint8Array(random.int(300))),
    };
    if (flags & (FLAG.SYN | FLAG.URG)) {
      packet.handshake = {
        maxPayload: random.int(65536),
        window: random.int(2 ** 32),
        cookie: random.fill(new Uint8Array(random.int(33))),
      };
    }
    if (flags & FLAG.ACK) {
      packet.ackInfo = {
        window: random.int(2 ** 32),
        ackDelayMicros: random.int(65536),
        sack: Array.from({ length: sackCount }, () => {
          const start = random.int(2 ** 31);
          return [start, start + 1 + random.int(1000)] as const;
        }),
      };
    }
    if (flags & FLAG.FEC) {
      packet.fec = {
        group: random.int(2 ** 32),
        index: random.int(256),
        dataShards: 10,
        parityShards: 3,
      };
    }
    const bytes = encodePacket(packet);
    // In place, into a dirty buffer at an odd offset: the same bytes, every byte written.
    const target = random.fill(new Uint8Array(bytes.length + 9)).subarray(1);
    assert.equal(encodePacketInto(packet, target), bytes.length);
    assert.deepEqual(target.subarray(0, bytes.length), bytes);
    assert.throws(() => encodePacketInto(packet, target.subarray(0, bytes.length - 1)), RangeError);
    const decoded = decodePacket(bytes);
    assert.ok(decoded.ok);
    assert.deepEqual(encodePacket(decoded.packet), bytes);
    // Mutations: truncation, byte flips, appended garbage. Must return, never throw.
    const cut = decodePacket(bytes.subarray(0, random.int(bytes.length)));
    assert.equal(cut.ok, false);
    const flipped = bytes.slice();
    flipped[random.int(flipped.length)]! ^= 1 + random.int(255);
    assert.equal(decodePacket(flipped).ok, false);
    const longer = new Uint8Array(bytes.length + 1 + random.int(10));
    longer.set(bytes);
    assert.equal(decodePacket(longer).ok, false);
  }
});

Deno.test("uuidFromBytes() spells each id right when ids alternate (the last one is cached)", () => {
  const ids = ["01890a5d-ac96-774b-bcce-b302099a8057", "01890a5d-ac96-774b-bcce-b302099a8058"];
  const buffer = new Uint8Array(20);
  for (let i = 0; i < 6; i++) {
    const id = ids[i % 3 === 0 ? 0 : 1]!;
    uuidToBytes(id, buffer, 3);
    assert.equal(uuidFromBytes(buffer, 3), id);
  }
});
