import assert from "node:assert/strict";
import {
  connectivityState,
  credentials,
  Metadata,
  Server,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import { connect } from "node:net";
import { HealthClient, type HealthServer, HealthService } from "../proto/gen/health.ts";
import {
  goawayGuardedCredentials,
  GoawayStripper,
  listenGuarded,
  startDialedChannel,
} from "./grpc_guard.ts";
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
      const stripper = new GoawayStripper({ preface });
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

Deno.test("goawayGuardedCredentials: the client's transport drops GOAWAY frames from a real socket and passes the rest both ways", async () => {
  const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const socket = connect({ host: "127.0.0.1", port: server.addr.port });
  await new Promise((resolve) => socket.once("connect", resolve));
  const upstream = await server.accept();
  // The connector grpc-js calls with the socket it connected.
  const connector = goawayGuardedCredentials()._createSecureConnector(
    { path: "127.0.0.1" },
    {},
  );
  const { socket: transport, secure } = await connector.connect(socket);
  assert.equal(secure, false);
  transport.write(new TextEncoder().encode("PRI * HTTP/2.0"));
  const buf = new Uint8Array(64);
  const n = await upstream.read(buf);
  assert.equal(new TextDecoder().decode(buf.subarray(0, n!)), "PRI * HTTP/2.0");
  const ping = frame(0x6, [1, 2, 3, 4, 5, 6, 7, 8], 0);
  const received: Uint8Array[] = [];
  transport.on("data", (chunk: Uint8Array) => received.push(chunk));
  const ended = new Promise((resolve) => transport.once("end", resolve));
  await upstream.write(concat([frame(0x7, [0, 0, 0, 0, 0, 0, 0, 0], 0), ping]));
  upstream.close();
  await ended; // the server's close reaches the client
  assert.deepEqual(concat(received), ping);
  transport.destroy();
  server.close();
});

function startHealthServer(): Server {
  const server = new Server();
  const handlers: HealthServer = {
    check: (_call, callback) => callback(null, { status: 1 }),
    watch: (call) => call.end(),
  };
  server.addService(HealthService, handlers);
  return server;
}

Deno.test("startDialedChannel carries real gRPC calls over the streams its dial function opens", async () => {
  const server = startHealthServer();
  const listener = await listenGuarded(server, { hostname: "127.0.0.1", port: 0 });
  let dials = 0;
  const channel = await startDialedChannel(async () => {
    dials++;
    const socket = connect({ host: "127.0.0.1", port: listener.port });
    await new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return socket;
  });
  assert.notEqual(channel.address, `127.0.0.1:${listener.port}`);
  const client = new HealthClient(channel.address, channel.credentials);
  try {
    for (let i = 0; i < 20; i++) assert.equal(await check(client), 1);
    assert.equal(dials, 1, "one connection, dialed once");
    const state = client.getChannel();
    assert.equal(state.getConnectivityState(false), connectivityState.READY);
    const leftReady = new Promise((resolve) =>
      state.watchConnectivityState(connectivityState.READY, Date.now() + 5_000, resolve)
    );
    await channel.close();
    await leftReady;
    await assert.rejects(
      check(client),
      (error: ServiceError) => error.code === status.UNAVAILABLE,
      "close() ends the dialed connection, and no new one is opened",
    );
  } finally {
    client.close();
    await channel.close();
    await listener.close();
    server.forceShutdown();
  }
});

Deno.test("startDialedChannel: a failing dial fails the call with UNAVAILABLE", async () => {
  const channel = await startDialedChannel(() => Promise.reject(new Error("no route")));
  const client = new HealthClient(channel.address, channel.credentials);
  try {
    await assert.rejects(
      new Promise((resolve, reject) =>
        client.check(
          { service: "" },
          new Metadata(),
          { deadline: Date.now() + 2_000 },
          (error) => error ? reject(error) : resolve(null),
        )
      ),
      (error: ServiceError) => error.code === status.UNAVAILABLE,
    );
  } finally {
    client.close();
    await channel.close();
  }
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
  const server = startHealthServer();
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
