import assert from "node:assert/strict";
import { idFromBytes, idTimestamp, idToBytes, isId, newId, newIdBytes, parseId } from "./ids.ts";

Deno.test("newId() sets the RFC 9562 version 7 nibble and variant bits", () => {
  for (let i = 0; i < 100; i++) {
    const bytes = idToBytes(newId());
    assert.equal(bytes[6]! >> 4, 0x7, "version nibble");
    assert.equal(bytes[8]! >> 6, 0b10, "variant bits");
  }
});

Deno.test("newId() is strictly increasing over 10k ids, also within one millisecond", () => {
  const ids = Array.from({ length: 10_000 }, newId);
  for (let i = 1; i < ids.length; i++) assert.ok(ids[i - 1]! < ids[i]!, `id ${i} not increasing`);
  assert.equal(new Set(ids).size, ids.length);
  const sameMillisecond = ids.filter((id) => idTimestamp(id) === idTimestamp(ids[0]!));
  assert.ok(sameMillisecond.length > 1, "expected several ids in one millisecond");
});

Deno.test("idTimestamp() returns the creation time in Unix milliseconds", () => {
  const before = Date.now();
  const id = newId();
  const after = Date.now();
  const ts = idTimestamp(id);
  assert.ok(ts >= before && ts <= after, `${ts} not in [${before}, ${after}]`);
  assert.equal(idTimestamp("017f22e2-79b0-7cc3-98c4-dc0c0c07398f"), 0x017f22e279b0);
});

Deno.test("idToBytes() and idFromBytes() round-trip the 16-byte form", () => {
  const id = "017f22e2-79b0-7cc3-98c4-dc0c0c07398f"; // RFC 9562 appendix A.6 example
  const bytes = idToBytes(id);
  assert.deepEqual(
    Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(""),
    "017f22e279b07cc398c4dc0c0c07398f",
  );
  assert.equal(idFromBytes(bytes), id);
  assert.equal(newIdBytes().length, 16);
  assert.ok(isId(idFromBytes(newIdBytes())));
});

Deno.test("parseId() rejects wrong versions, variants and shapes, naming the field", () => {
  const bad = [
    "017f22e2-79b0-4cc3-98c4-dc0c0c07398f", // version 4
    "017f22e2-79b0-7cc3-c8c4-dc0c0c07398f", // variant 110
    "017f22e2-79b0-7cc3-98c4-dc0c0c07398", // too short
    "017f22e279b07cc398c4dc0c0c07398f", // no dashes
    "",
    42,
    null,
  ];
  for (const value of bad) {
    assert.throws(() => parseId(value, "session_id"), {
      name: "TypeError",
      message: /session_id/,
    }, String(value));
    assert.equal(isId(value), false);
  }
  assert.equal(
    parseId("017F22E2-79B0-7CC3-98C4-DC0C0C07398F"),
    "017f22e2-79b0-7cc3-98c4-dc0c0c07398f",
  );
  assert.throws(() => idFromBytes(new Uint8Array(15)), TypeError);
  const v4 = idToBytes("017f22e2-79b0-7cc3-98c4-dc0c0c07398f");
  v4[6] = 0x4c;
  assert.throws(() => idFromBytes(v4), TypeError);
});
