/**
 * One connection suite, run over the simulated network (virtual clock) and over real UDP
 * sockets (directly and through the impairment relay).
 */
import assert from "node:assert/strict";
import { AppError } from "../kernel/mod.ts";
import type { QuantumConnection } from "./connection.ts";
import { messageChannel } from "./messages.ts";
import {
  type Harness,
  randomBytes,
  readAll,
  sha256,
  simHarness,
  transfer,
  udpHarness,
  writeAll,
} from "./_test_util.ts";

const harnesses: Array<{ make: () => Harness; size: number; real: boolean }> = [
  { make: () => simHarness(), size: 1 << 20, real: false },
  {
    make: () => simHarness({ loss: 0.05, jitterMs: 3, duplicate: 0.02, corrupt: 0.01, seed: 11 }),
    size: 1 << 20,
    real: false,
  },
  { make: () => udpHarness(), size: 1 << 20, real: true },
  { make: () => udpHarness({ loss: 0.05, seed: 5 }), size: 512 * 1024, real: true },
];

function delay(harness: Harness, ms: number): Promise<void> {
  return new Promise((resolve) => harness.clock.setTimer(ms, resolve));
}

for (const { make, size, real } of harnesses) {
  const label = (() => {
    const h = make();
    const name = h.name;
    return name + ("net" in h && (h as { net: { stats: unknown } }).net ? "" : "");
  })();
  const tag = `[${label}${make.toString().includes("loss") ? ", lossy" : ""}]`;

  Deno.test(`${tag} transfers ${size >> 10} KiB byte-exact and both sides close gracefully`, async () => {
    await using harness = make();
    const data = randomBytes(size, 1);
    const result = await transfer(harness, data);
    assert.equal(result.received.length, data.length);
    assert.equal(result.received.sha256, sha256(data));
    assert.equal(result.clientClose.reason, "closed");
    assert.equal(result.serverClose.reason, "closed");
    const stats = result.client.stats();
    assert.ok(stats.bytesSent >= size);
    assert.ok(stats.packetsSent > size / 1100);
    assert.ok(stats.rttMs > 0);
    assert.equal(result.server.stats().bytesReceived >= size, true);
  });

  Deno.test(`${tag} half-close: the server reads to EOF, then answers on its open side`, async () => {
    await using harness = make();
    const listener = harness.listen();
    const request = randomBytes(100_000, 2);
    const server = (async () => {
      const conn = (await listener.accept())!;
      const got = await readAll(conn); // client's FIN ends our readable
      // Our writable is still open after the peer's FIN: answer with the hash of the request.
      await writeAll(conn, new TextEncoder().encode(got.sha256));
      await conn.close();
      return got;
    })();
    const client = await harness.dial(listener);
    await writeAll(client, request);
    const answer = await new Response(client.readable).text();
    await client.close();
    assert.equal(answer, sha256(request));
    assert.equal((await server).length, request.length);
    assert.equal((await client.closed).reason, "closed");
  });

  Deno.test(`${tag} 50 concurrent connections on one listener each transfer distinct data`, async () => {
    await using harness = make();
    const listener = harness.listen();
    const perConn = real ? 16 * 1024 : 64 * 1024;
    const payloads = Array.from({ length: 50 }, (_, i) => randomBytes(perConn + i, 100 + i));
    const expected = new Set(payloads.map(sha256));
    const served = (async () => {
      const results: Promise<string>[] = [];
      for (let i = 0; i < 50; i++) {
        const conn = (await listener.accept())!;
        results.push((async () => {
          const got = await readAll(conn);
          await conn.close();
          return got.sha256;
        })());
      }
      return await Promise.all(results);
    })();
    await Promise.all(payloads.map(async (payload) => {
      const conn = await harness.dial(listener);
      await writeAll(conn, payload, 8192);
      await conn.readable.cancel();
      await conn.close();
      assert.equal((await conn.closed).reason, "closed");
    }));
    const hashes = await served;
    assert.equal(new Set(hashes).size, 50);
    for (const h of hashes) assert.ok(expected.has(h));
    assert.equal(listener.stats().accepted, 50);
  });

  Deno.test(`${tag} message API delivers 2000 messages in order, none lost or duplicated`, async () => {
    await using harness = make();
    const listener = harness.listen();
    const server = (async () => {
      const conn = (await listener.accept())!;
      const messages = messageChannel(conn);
      const seen: number[] = [];
      for await (const message of messages) {
        const view = new DataView(message.buffer, message.byteOffset);
        assert.equal(message.length, 4 + (view.getUint32(0) % 300));
        seen.push(view.getUint32(0));
      }
      await messages.close();
      await conn.close();
      return seen;
    })();
    const conn = await harness.dial(listener);
    const messages = messageChannel(conn);
    for (let i = 0; i < 2000; i++) {
      const message = new Uint8Array(4 + (i % 300));
      new DataView(message.buffer).setUint32(0, i);
      await messages.send(message);
    }
    await messages.close();
    assert.equal(await messages.receive(), null);
    await conn.close();
    assert.deepEqual(await server, Array.from({ length: 2000 }, (_, i) => i));
  });

  Deno.test(`${tag} abort() sends RST: the peer's streams error and closed says "reset"`, async () => {
    await using harness = make();
    const listener = harness.listen();
    const accepted = listener.accept();
    const client = await harness.dial(listener);
    const writer = client.writable.getWriter();
    await writer.write(new Uint8Array(10));
    const server = (await accepted)!;
    const reader = server.readable.getReader();
    assert.equal((await reader.read()).value?.length, 10);
    client.abort("test abort");
    assert.deepEqual(await client.closed, {
      reason: "aborted",
      message: "test abort",
      remote: false,
    });
    const info = await server.closed;
    assert.equal(info.reason, "reset");
    assert.equal(info.remote, true);
    await assert.rejects(reader.read(), (e) => e instanceof AppError && e.status === "ABORTED");
    await assert.rejects(writer.write(new Uint8Array(1)));
    await client.close(); // no-op after abort, resolves
  });

  Deno.test(`${tag} a paused reader bounds the sender's buffer; all data arrives after`, async () => {
    await using harness = make();
    const sendBufferBytes = 128 * 1024;
    const listener = harness.listen({ receiveWindow: 32 });
    const accepted = listener.accept();
    const client = await harness.dial(listener, { sendBufferBytes });
    const data = randomBytes(2 << 20, 3);
    const writing = writeAll(client, data, 16 * 1024);
    const server = (await accepted)!;
    // Nobody reads for 3 s (virtual) / 0.6 s (real): sample the sender meanwhile.
    let maxSendBuffer = 0;
    let maxReceiveBuffer = 0;
    const pauseMs = real ? 600 : 3000;
    for (let t = 0; t < pauseMs; t += 50) {
      await delay(harness, 50);
      maxSendBuffer = Math.max(maxSendBuffer, client.stats().sendBufferedBytes);
      maxReceiveBuffer = Math.max(maxReceiveBuffer, server.stats().receiveBufferedBytes);
    }
    assert.ok(maxSendBuffer > 0, "the sender did buffer while blocked");
    assert.ok(maxSendBuffer <= sendBufferBytes + 16 * 1024, `send buffer ${maxSendBuffer}`);
    assert.ok(maxReceiveBuffer <= 32 * 1088, `receive buffer ${maxReceiveBuffer}`);
    assert.equal(client.stats().peerWindowPackets, 0);
    const got = await readAll(server);
    await writing;
    assert.equal(got.sha256, sha256(data));
    await server.close();
    await client.close();
  });

  Deno.test(`${tag} closing the listener resets its connections with "listener_closed"`, async () => {
    await using harness = make();
    const listener = harness.listen();
    const accepted = listener.accept();
    const client: QuantumConnection = await harness.dial(listener);
    await client.writable.getWriter().write(new Uint8Array(1));
    const server = (await accepted)!;
    await listener.close();
    assert.equal((await server.closed).reason, "listener_closed");
    assert.equal(await listener.accept(), null);
    assert.equal(listener.stats().connections, 0);
    if (tag.includes("lossy")) client.abort(); // the one RST may be lost: do not wait 30 s
    assert.match((await client.closed).reason, tag.includes("lossy") ? /reset|aborted/ : /reset/);
  });
}
