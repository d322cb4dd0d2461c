/**
 * gRPC over Quantum end to end: a real grpc-js server on a Quantum listener, a real grpc-js
 * client through `connectGrpcOverQuantum` (the gateway's way) or the loopback TCP tunnel;
 * unary, server-streaming and bidirectional calls, directly and through the relay at 5% loss.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { listen } from "./endpoint.ts";
import {
  connectGrpcOverQuantum,
  pumpCoalesced,
  serveGrpcOverQuantum,
  startQuantumTunnel,
} from "./grpc_bridge.ts";
import { startRelay } from "./relay.ts";

const json = {
  serialize: (value: unknown) => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes: Buffer) => JSON.parse(bytes.toString()),
};

function method(name: string, requestStream: boolean, responseStream: boolean) {
  return {
    path: `/aetherflow.test.Echo/${name}`,
    requestStream,
    responseStream,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  };
}

const EchoService = {
  echo: method("Echo", false, false),
  count: method("Count", false, true),
  chat: method("Chat", true, true),
} as unknown as grpc.ServiceDefinition;

type Any = Record<string, unknown>;

function startServer() {
  const server = new grpc.Server();
  server.addService(EchoService, {
    echo(call: grpc.ServerUnaryCall<Any, Any>, callback: grpc.sendUnaryData<Any>) {
      if (call.request.fail) {
        callback({ code: grpc.status.NOT_FOUND, details: "no such thing" });
        return;
      }
      callback(null, { echo: call.request.text, blob: call.request.blob });
    },
    count(call: grpc.ServerWritableStream<Any, Any>) {
      const n = call.request.n as number;
      for (let i = 0; i < n; i++) call.write({ i });
      call.end();
    },
    chat(call: grpc.ServerDuplexStream<Any, Any>) {
      call.on("data", (message: Any) => call.write({ reply: message.i }));
      call.on("end", () => call.end());
    },
  });
  return server;
}

const Client = grpc.makeGenericClientConstructor(EchoService, "Echo") as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
) => EchoClient;

interface EchoClient extends grpc.Client {
  echo(request: Any, callback: (error: grpc.ServiceError | null, reply: Any) => void): void;
  count(request: Any): grpc.ClientReadableStream<Any>;
  chat(): grpc.ClientDuplexStream<Any, Any>;
}

async function exercise(
  address: string,
  label: string,
  credentials = grpc.credentials.createInsecure(),
) {
  const client = new Client(address, credentials);
  try {
    const unary = (request: Any) =>
      new Promise<Any>((resolve, reject) =>
        client.echo(
          request,
          (error: grpc.ServiceError | null, reply: Any) => error ? reject(error) : resolve(reply),
        )
      );
    // Unary: 200 calls, 32 in flight, plus one large payload and one error status.
    for (let batch = 0; batch < 200; batch += 32) {
      const calls = [];
      for (let i = batch; i < Math.min(batch + 32, 200); i++) calls.push(unary({ text: `m${i}` }));
      const replies = await Promise.all(calls);
      replies.forEach((r, k) => assert.equal(r.echo, `m${batch + k}`));
    }
    const blob = "x".repeat(300_000);
    assert.equal((await unary({ text: "big", blob })).blob, blob);
    await assert.rejects(
      unary({ fail: true }),
      (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND,
    );
    // Server streaming: 2000 messages in order.
    const seen: number[] = [];
    await new Promise<void>((resolve, reject) => {
      const stream = client.count({ n: 2000 });
      stream.on("data", (m: Any) => seen.push(m.i as number));
      stream.on("end", resolve);
      stream.on("error", reject);
    });
    assert.deepEqual(seen, Array.from({ length: 2000 }, (_, i) => i));
    // Bidirectional: 500 messages each way.
    const replies: number[] = [];
    await new Promise<void>((resolve, reject) => {
      const stream = client.chat();
      stream.on("data", (m: Any) => replies.push(m.reply as number));
      stream.on("end", resolve);
      stream.on("error", reject);
      for (let i = 0; i < 500; i++) stream.write({ i });
      stream.end();
    });
    assert.deepEqual(replies, Array.from({ length: 500 }, (_, i) => i), label);
  } finally {
    client.close();
  }
}

Deno.test("grpc-js unary, server-streaming and bidi calls work over Quantum (injector + connectGrpcOverQuantum)", async () => {
  const server = startServer();
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  const bridge = serveGrpcOverQuantum(server, listener);
  const channel = await connectGrpcOverQuantum({
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  try {
    await exercise(channel.address, "direct", channel.credentials);
    assert.equal(listener.stats().accepted, 1, "one Quantum connection carried every call");
  } finally {
    await channel.close();
    await bridge.close();
    server.forceShutdown();
  }
});

Deno.test("grpc-js unary, server-streaming and bidi calls work over Quantum (injector + tunnel)", async () => {
  const server = startServer();
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  const bridge = serveGrpcOverQuantum(server, listener);
  const tunnel = await startQuantumTunnel({ hostname: "127.0.0.1", port: listener.addr.port });
  try {
    await exercise(tunnel.address, "direct");
    assert.ok(listener.stats().accepted >= 1);
  } finally {
    await tunnel.close();
    await bridge.close();
    server.forceShutdown();
  }
});

Deno.test("grpc-js calls over Quantum survive 5% loss through the relay", async () => {
  const server = startServer();
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  const bridge = serveGrpcOverQuantum(server, listener);
  const relay = startRelay({
    target: { hostname: "127.0.0.1", port: listener.addr.port },
    impairments: { loss: 0.05, seed: 12 },
  });
  const channel = await connectGrpcOverQuantum({ hostname: "127.0.0.1", port: relay.addr.port });
  try {
    await exercise(channel.address, "relay", channel.credentials);
    const stats = relay.stats();
    assert.ok(stats.upstream.lost > 0 && stats.downstream.lost > 0);
  } finally {
    await channel.close();
    await bridge.close();
    await relay.close();
    server.forceShutdown();
  }
});

Deno.test("grpc-js reconnects over connectGrpcOverQuantum after the Quantum server restarts", async () => {
  const first = startServer();
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  let bridge = serveGrpcOverQuantum(first, listener);
  const channel = await connectGrpcOverQuantum({
    hostname: "127.0.0.1",
    port,
    handshakeTimeoutMs: 2000,
  });
  const client = new Client(channel.address, channel.credentials);
  const call = (text: string) =>
    new Promise<Any>((resolve, reject) =>
      client.echo(
        { text },
        (error: grpc.ServiceError | null, reply: Any) => (error ? reject(error) : resolve(reply)),
      )
    );
  let second: grpc.Server | null = null;
  try {
    assert.equal((await call("before")).echo, "before");
    await bridge.close(); // RSTs every Quantum connection: grpc-js sees its transport end
    first.forceShutdown();
    second = startServer();
    const restarted = listen({ hostname: "127.0.0.1", port });
    bridge = serveGrpcOverQuantum(second, restarted);
    // grpc-js reconnects: its connector dials a new Quantum connection.
    let reply: Any | null = null;
    for (let attempt = 0; attempt < 20 && !reply; attempt++) {
      reply = await call("after").catch((e: grpc.ServiceError) => {
        assert.equal(e.code, grpc.status.UNAVAILABLE);
        return null;
      });
    }
    assert.equal(reply?.echo, "after");
    assert.equal(restarted.stats().accepted, 1, "the reply came over a new Quantum connection");
  } finally {
    client.close();
    await channel.close();
    await bridge.close();
    second?.forceShutdown();
  }
});

/** An HTTP/2 frame: 9-byte header (length, type, flags, stream id 0) and a filled payload. */
function frame(type: number, length: number, fill: number): Uint8Array {
  const bytes = new Uint8Array(9 + length).fill(fill, 9);
  bytes.set([length >> 16, (length >> 8) & 0xff, length & 0xff, type, 0, 0, 0, 0, 0]);
  return bytes;
}

async function readAllFrom(conn: { readable: ReadableStream<Uint8Array> }): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of conn.readable) parts.push(chunk);
  return new Uint8Array(parts.flatMap((part) => [...part]));
}

for (const dropGoaway of [true, false]) {
  Deno.test(`the tunnel carries bytes both ways and ${dropGoaway ? "drops" : "keeps"} GOAWAY frames (dropGoaway: ${dropGoaway})`, async () => {
    const listener = listen({ hostname: "127.0.0.1", port: 0 });
    const settings = frame(0x4, 0, 0);
    const goaway = frame(0x7, 8, 0xaa);
    const ping = frame(0x6, 8, 0x55);
    const upload = new Uint8Array(200_000).map((_, i) => i % 251);
    const served = (async () => {
      for await (const conn of listener) {
        const received = await readAllFrom(conn); // the client's whole upload, then FIN
        const writer = conn.writable.getWriter();
        // The GOAWAY split across writes, as it may arrive in packets.
        for (const part of [settings, goaway.subarray(0, 4), goaway.subarray(4), ping]) {
          await writer.write(part);
        }
        await writer.close();
        return received;
      }
    })();
    const tunnel = await startQuantumTunnel({
      hostname: "127.0.0.1",
      port: listener.addr.port,
      dropGoaway,
    });
    try {
      const [hostname, port] = tunnel.address.split(":");
      const socket = await Deno.connect({ hostname: hostname!, port: Number(port) });
      for (let at = 0; at < upload.length; at += 1000) {
        await socket.write(upload.subarray(at, at + 1000));
      }
      await socket.closeWrite();
      const downloaded = await readAllFrom(socket); // closes the socket at its end
      assert.deepEqual(await served, upload);
      const expected = dropGoaway ? [settings, ping] : [settings, goaway, ping];
      assert.deepEqual(downloaded, new Uint8Array(expected.flatMap((f) => [...f])));
    } finally {
      await tunnel.close();
      await listener.close();
    }
  });
}

Deno.test("pumpCoalesced delivers every chunk in order, each without waiting for more input, joining chunks queued during a write", async () => {
  // Reads and writes that settle after varying numbers of microtask turns, so every
  // interleaving of "a write finishes" and "a chunk arrives" comes up.
  const turns = async (n: number) => {
    for (let i = 0; i < n; i++) await Promise.resolve();
  };
  const chunks = Array.from({ length: 3000 }, (_, i) => new Uint8Array([i % 256, i % 7]));
  let next = 0;
  const written: Uint8Array[] = [];
  let writtenBytes = 0;
  let wake: (() => void) | null = null;
  const pumped = pumpCoalesced({
    read: async () => {
      await turns(next % 5);
      if (next >= chunks.length) return null;
      // Every third chunk is a request that waits for its answer: its bytes must go out
      // without a further chunk coming to push them.
      if (next % 3 === 0) {
        while (writtenBytes < next * 2) await new Promise<void>((resolve) => (wake = resolve));
      }
      return chunks[next++]!;
    },
    write: async (bytes) => {
      await turns(written.length % 11);
      written.push(bytes);
      writtenBytes += bytes.length;
      // The waiting read resumes a few turns around the moment this write settles.
      const waker = wake;
      void turns(written.length % 4).then(() => waker?.());
    },
    onError: () => assert.fail("no error expected"),
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`stalled after ${writtenBytes} bytes`)), 5000);
  });
  try {
    await Promise.race([pumped, stalled]);
  } finally {
    clearTimeout(timer);
  }
  const joined = new Uint8Array(written.flatMap((w) => [...w]));
  assert.deepEqual(joined, new Uint8Array(chunks.flatMap((c) => [...c])));
  assert.ok(written.length < chunks.length, `${written.length} writes for ${chunks.length} chunks`);
});
