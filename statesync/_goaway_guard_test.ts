import assert from "node:assert/strict";
import { credentials, type ServiceError } from "@grpc/grpc-js";
import * as pb from "../proto/gen/statesync.ts";
import { IncomingGoawayStripper } from "./_goaway_guard.ts";
import { freePort } from "../kernel/testing.ts";
import { startMain } from "./_test_child.ts";

const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

function frame(type: number, payloadLength: number, fill: number): Uint8Array {
  const out = new Uint8Array(9 + payloadLength).fill(fill);
  out[0] = (payloadLength >> 16) & 0xff;
  out[1] = (payloadLength >> 8) & 0xff;
  out[2] = payloadLength & 0xff;
  out[3] = type;
  out[4] = 0;
  out.fill(0, 5, 9); // stream id 0
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A small seeded PRNG (mulberry32). */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("IncomingGoawayStripper drops GOAWAY frames and keeps every other byte, however the stream is split", () => {
  const settings = frame(0x4, 12, 1);
  const headers = frame(0x1, 40, 2);
  const goaway = frame(0x7, 8, 3);
  const data = frame(0x0, 300, 4);
  const empty = frame(0x6, 0, 5); // zero-length payload
  const input = concat([PREFACE, settings, headers, goaway, data, empty, goaway, data]);
  const expected = concat([PREFACE, settings, headers, data, empty, data]);
  for (let seed = 1; seed <= 300; seed++) {
    const next = random(seed);
    const stripper = new IncomingGoawayStripper();
    const out: Uint8Array[] = [];
    for (let at = 0; at < input.length;) {
      const size = 1 + Math.floor(next() * (seed % 3 === 0 ? 4 : 64));
      out.push(stripper.push(input.subarray(at, at + size)));
      at += size;
    }
    assert.deepEqual(concat(out), expected, `seed ${seed}`);
    assert.equal(stripper.dropped, 2, `seed ${seed}`);
  }
});

Deno.test("IncomingGoawayStripper passes a chunk without GOAWAY through uncopied", () => {
  const stripper = new IncomingGoawayStripper();
  const chunk = concat([PREFACE, frame(0x4, 6, 1), frame(0x0, 100, 2)]);
  assert.equal(stripper.push(chunk), chunk);
});

function rpc<T>(start: (cb: (error: ServiceError | null, response: T) => void) => unknown) {
  return new Promise<T>((resolve, reject) => {
    start((error, response) => (error ? reject(error) : resolve(response)));
  });
}

Deno.test("the server survives a client that closes gracefully after 300 calls (Deno http2 GOAWAY abort)", async () => {
  // Server in its own process: without the guard, its nghttp2 aborts on the client's GOAWAY.
  const port = freePort();
  const { child, log } = startMain({
    AETHERFLOW_STATESYNC_PORT: String(port),
    AETHERFLOW_STATESYNC_STORAGE: "memory",
  });
  const address = `127.0.0.1:${port}`;
  try {
    assert.match(await log.wait("Statesync service listening"), /listening/);
    const first = new pb.StateSyncServiceClient(address, credentials.createInsecure());
    for (let i = 0; i < 300; i++) await rpc((cb) => first.getStats({}, cb));
    first.close(); // sends GOAWAY
    const second = new pb.StateSyncServiceClient(address, credentials.createInsecure());
    try {
      const stats = await rpc<pb.Stats>((cb) => second.getStats({}, cb));
      assert.equal(stats.documents, 0);
    } finally {
      second.close();
    }
    child.kill("SIGTERM");
    const exit = await child.status;
    assert.equal(exit.code, 0, `exit ${exit.code}; log:\n${log.lines.join("\n")}`);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await child.status;
    await log.done;
  }
});
