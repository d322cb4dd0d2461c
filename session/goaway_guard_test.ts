import assert from "node:assert/strict";
import { ClientGoawayStripper } from "./_goaway_guard.ts";

function frame(type: number, payload: number[], stream = 0): number[] {
  const n = payload.length;
  return [n >> 16, (n >> 8) & 0xff, n & 0xff, type, 0, 0, 0, 0, stream, ...payload];
}

const PREFACE = [...new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")];
const SETTINGS = frame(0x4, [0, 3, 0, 0, 0, 100]);
const HEADERS = frame(0x1, Array.from({ length: 40 }, (_, i) => i), 1);
const GOAWAY_FRAME = frame(0x7, [0, 0, 0, 0, 0, 0, 0, 0]);
const DATA = frame(0x0, Array.from({ length: 300 }, (_, i) => i & 0xff), 1);

Deno.test("ClientGoawayStripper drops GOAWAY frames and forwards everything else in any chunking", () => {
  const input = [...PREFACE, ...SETTINGS, ...HEADERS, ...GOAWAY_FRAME, ...DATA, ...GOAWAY_FRAME];
  const expected = [...PREFACE, ...SETTINGS, ...HEADERS, ...DATA];
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let round = 0; round < 200; round++) {
    const stripper = new ClientGoawayStripper();
    const out: number[] = [];
    let i = 0;
    while (i < input.length) {
      const size = round === 0 ? 1 : 1 + Math.floor(random() * 40);
      out.push(...stripper.push(new Uint8Array(input.slice(i, i + size))));
      i += size;
    }
    assert.deepEqual(out, expected, `round ${round}`);
    assert.equal(stripper.dropped, 2);
  }
});

Deno.test("ClientGoawayStripper returns an unchanged chunk without copying", () => {
  const stripper = new ClientGoawayStripper();
  const chunk = new Uint8Array([...PREFACE, ...SETTINGS, ...DATA]);
  assert.equal(stripper.push(chunk), chunk);
});
