import assert from "node:assert/strict";
import { credentials, Server, type ServiceError } from "@grpc/grpc-js";
import { HealthClient, type HealthServer, HealthService } from "../proto/gen/health.ts";
import { GoawayStripper, listenGuarded, startGoawayFilter } from "./grpc_guard.ts";
import { seededRandom } from "./testing.ts";

const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

function frame(type: number, payload: number[], streamId = 1): Uint8Array {
  const out = new Uint8Array(9 + payload.length);
  out[0] = (payload.length >> 16) & 0xff;
  out[1] = (payload.length >> 8) & 0xff;
  out[2] = payload.length & 0xff;
  out[3] = type;
  out[4] = 0;
  new DataView(out.buffer).setUint32(5, streamId);
  out.set(payload, 9);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

for (const preface of [false, true]) {
  const direction = preface ? "client → server (with preface)" : "server → client";
  Deno.test(`GoawayStripper ${direction} drops exactly the GOAWAY frames however the stream is chunked`, () => {
    const random = seededRandom(preface ? 7 : 42);
    for (let round = 0; round < 200; round++) {
      const frames: Uint8Array[] = preface ? [PREFACE] : [];
      const kept: Uint8Array[] = preface ? [PREFACE] : [];
      let goaways = 0;
      for (let f = 0; f < 12; f++) {
        const type = [0x0, 0x1, 0x4, 0x6, 0x7, 0x8][Math.floor(random() * 6)]!;
        const payload = Array.from(
          { length: Math.floor(random() * 40) },
          () => Math.floor(random() * 256),
        );
        const bytes = frame(type, payload, f);
        frames.push(bytes);
        if (type === 0x7) goaways++;
        else kept.push(bytes);
      }
      const stream = concat(frames);
      let callbacks = 0;
      const stripper = new GoawayStripper({ preface, onDrop: () => callbacks++ });
      const out: Uint8Array[] = [];
      // Every third round splits into 1..4-byte chunks so frame headers span chunks often.
      const maxChunk = round % 3 === 0 ? 4 : 30;
      for (let i = 0; i < stream.length;) {
        const size = 1 + Math.floor(random() * maxChunk);
        out.push(stripper.push(stream.slice(i, i + size)).slice());
        i += size;
      }
      assert.deepEqual(concat(out), concat(kept), `round ${round}`);
      assert.equal(stripper.dropped, goaways, `round ${round}`);
      assert.equal(callbacks, goaways, `round ${round}`);
    }
  });
}

Deno.test("GoawayStripper passes a chunk without GOAWAY through uncopied", () => {
  const server = new GoawayStripper();
  const chunk = concat([frame(0x0, [1, 2, 3]), frame(0x1, [4])]);
  assert.equal(server.push(chunk), chunk);
  const client = new GoawayStripper({ preface: true });
  const first = concat([PREFACE, frame(0x4, [0, 3, 0, 0, 0, 100], 0), frame(0x0, [9, 9], 1)]);
  assert.equal(client.push(first), first);
});

Deno.test("GoawayStripper with a preface does not parse the preface as a frame", () => {
  // Parsed as a frame header, "PRI * HTT" would be a huge frame swallowing the GOAWAY after it.
  const stripper = new GoawayStripper({ preface: true });
  const goaway = frame(0x7, [0, 0, 0, 0, 0, 0, 0, 0], 0);
  assert.deepEqual(stripper.push(concat([PREFACE, goaway])), PREFACE);
  assert.equal(stripper.dropped, 1);
});

Deno.test("startGoawayFilter relays bytes both ways over real sockets and drops GOAWAY", async () => {
  const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const filter = await startGoawayFilter({ hostname: "127.0.0.1", port: server.addr.port });
  const [port] = filter.address.split(":").slice(-1).map(Number);
  const client = await Deno.connect({ hostname: "127.0.0.1", port: port! });
  const upstream = await server.accept();
  await client.write(new TextEncoder().encode("PRI * HTTP/2.0"));
  const buf = new Uint8Array(64);
  const n = await upstream.read(buf);
  assert.equal(new TextDecoder().decode(buf.subarray(0, n!)), "PRI * HTTP/2.0");
  const ping = frame(0x6, [1, 2, 3, 4, 5, 6, 7, 8], 0);
  await upstream.write(concat([frame(0x7, [0, 0, 0, 0, 0, 0, 0, 0], 0), ping]));
  let got: Uint8Array = new Uint8Array(0);
  while (got.length < ping.length) {
    const m = await client.read(buf);
    if (m === null) break;
    got = concat([got, buf.slice(0, m)]);
  }
  assert.deepEqual(got, ping);
  assert.equal(filter.dropped, 1);
  upstream.close();
  assert.equal(await client.read(buf), null, "server close reaches the client");
  client.close();
  await filter.close();
  server.close();
});

function check(client: HealthClient): Promise<number> {
  return new Promise((resolve, reject) => {
    client.check({ service: "" }, (error: ServiceError | null, response) => {
      if (error) reject(error);
      else resolve(response.status);
    });
  });
}

Deno.test("listenGuarded serves gRPC, and a closed listener refuses new connections while open ones keep working", async () => {
  const server = new Server();
  const handlers: HealthServer = {
    check: (_call, callback) => callback(null, { status: 1 }),
    watch: (call) => call.end(),
  };
  server.addService(HealthService, handlers);
  const listener = await listenGuarded(server, { hostname: "127.0.0.1", port: 0 });
  const client = new HealthClient(`127.0.0.1:${listener.port}`, credentials.createInsecure());
  try {
    for (let i = 0; i < 20; i++) assert.equal(await check(client), 1);
    await listener.close();
    assert.equal(await check(client), 1, "the open connection still serves");
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: listener.port }));
  } finally {
    client.close();
    server.forceShutdown();
  }
});
