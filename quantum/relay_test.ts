/** The impairment relay, and connection migration through it by rebinding. */
import assert from "node:assert/strict";
import { listen } from "./endpoint.ts";
import { startRelay } from "./relay.ts";
import { SimNetwork } from "./sim_net.ts";
import { VirtualClock } from "./clock.ts";
import { dial } from "./endpoint.ts";
import { randomBytes, readAll, sha256, writeAll } from "./_test_util.ts";

Deno.test("a connection survives its source address changing mid-transfer through the relay (rebind)", async () => {
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  await using relay = startRelay({
    target: { hostname: "127.0.0.1", port: listener.addr.port },
    impairments: { loss: 0.02, seed: 3 },
  });
  try {
    const data = randomBytes(4 << 20, 31);
    const server = (async () => {
      const conn = (await listener.accept())!;
      const reader = conn.readable.getReader();
      const chunks: Uint8Array[] = [];
      let received = 0;
      const addresses = new Set<number>();
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        chunks.push(value);
        received += value.length;
        addresses.add(conn.remoteAddr.port);
        if (received >= data.length / 3 && relay.stats().rebinds === 0) relay.rebind();
        if (received >= (2 * data.length) / 3 && relay.stats().rebinds === 1) relay.rebind();
      }
      const all = new Uint8Array(received);
      let offset = 0;
      for (const c of chunks) {
        all.set(c, offset);
        offset += c.length;
      }
      await conn.close();
      return { hash: sha256(all), addresses, stats: conn.stats(), closed: await conn.closed };
    })();
    const client = await dial({ hostname: "127.0.0.1", port: relay.addr.port });
    await writeAll(client, data);
    const result = await server;
    await client.close();
    assert.equal(result.hash, sha256(data));
    assert.equal(relay.stats().rebinds, 2);
    assert.ok(result.addresses.size >= 3, `server saw ports ${[...result.addresses]}`);
    assert.ok(result.stats.migrations >= 2);
    assert.equal(result.closed.reason, "closed");
    assert.equal((await client.closed).reason, "closed");
  } finally {
    await listener.close();
  }
});

/** Counts events; `reached(n)` resolves once the count is at least n. */
class Counter {
  value = 0;
  #waiters: Array<{ n: number; resolve: () => void }> = [];
  increment(): void {
    this.value++;
    this.#waiters = this.#waiters.filter((w) => (this.value >= w.n ? (w.resolve(), false) : true));
  }
  reached(n: number): Promise<void> {
    if (this.value >= n) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ n, resolve }));
  }
}

Deno.test("the relay applies loss, duplication and corruption with seeded counts", async () => {
  const sink = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const source = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const processed = new Counter();
  const received = new Counter();
  let corrupted = 0;
  await using relay = startRelay({
    target: { hostname: "127.0.0.1", port: (sink.addr as Deno.NetAddr).port },
    impairments: { loss: 0.2, duplicate: 0.1, corrupt: 0.1, seed: 7 },
    onDatagram: () => processed.increment(),
  });
  const reading = (async () => {
    const buffer = new Uint8Array(2048);
    while (true) {
      let data: Uint8Array;
      try {
        [data] = await sink.receive(buffer);
      } catch {
        return; // closed
      }
      if (data.some((b) => b !== 7)) corrupted++;
      received.increment();
    }
  })();
  try {
    const payload = new Uint8Array(100).fill(7);
    // Batches of 50 stay far below the kernel's receive buffers, so nothing is dropped there.
    for (let i = 0; i < 1000; i += 50) {
      for (let j = 0; j < 50; j++) await source.send(payload, relay.addr);
      await processed.reached(i + 50);
    }
    const stats = relay.stats().upstream;
    assert.equal(stats.offered, 1000);
    assert.ok(stats.lost > 150 && stats.lost < 250, `lost ${stats.lost}`);
    assert.ok(stats.duplicated > 50 && stats.duplicated < 130, `duplicated ${stats.duplicated}`);
    assert.ok(stats.corrupted > 50, `corrupted ${stats.corrupted}`);
    await received.reached(stats.delivered);
    assert.equal(received.value, stats.delivered);
    assert.equal(corrupted, stats.corrupted);
  } finally {
    sink.close();
    source.close();
    await reading;
  }
});

Deno.test("migration on the simulated network: the client socket rebinds and the transfer continues", async () => {
  const clock = new VirtualClock();
  const net = new SimNetwork({ clock, impairments: { delayMs: 3, loss: 0.02, seed: 4 } });
  const listener = listen({ packetConn: net.listen(9000), clock });
  const clientSocket = net.listen();
  const client = await dial({ hostname: "10.0.0.1", port: 9000, packetConn: clientSocket, clock });
  const data = randomBytes(2 << 20, 5);
  const server = (async () => {
    const conn = (await listener.accept())!;
    const got = await readAll(conn);
    await conn.close();
    return { got, migrations: conn.stats().migrations, port: conn.remoteAddr.port };
  })();
  const writer = client.writable.getWriter();
  for (let offset = 0; offset < data.length; offset += 65536) {
    if (offset === 1 << 20) clientSocket.rebind();
    await writer.write(data.subarray(offset, offset + 65536));
  }
  await writer.close();
  const result = await server;
  await client.close();
  await listener.close();
  assert.equal(result.got.sha256, sha256(data));
  assert.equal(result.migrations, 1);
  assert.equal(result.port, clientSocket.addr.port);
});

Deno.test("the relay keeps datagram order under fractional delays and a rate cap (no jitter)", async () => {
  const server = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const client = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  await using relay = startRelay({
    target: { hostname: "127.0.0.1", port: (server.addr as Deno.NetAddr).port },
    impairments: { delayMs: 2.3, bandwidthBytesPerSec: 2_000_000 },
  });
  try {
    const count = 60; // within the relay queue and the default socket buffers: none is dropped
    for (let i = 0; i < count; i++) {
      const datagram = new Uint8Array(1000 + (i % 7) * 30);
      new DataView(datagram.buffer).setUint32(0, i);
      await client.send(datagram, relay.addr);
    }
    const order: number[] = [];
    const buffer = new Uint8Array(2048);
    while (order.length < count) {
      const [data] = await server.receive(buffer);
      if (order.length === 0) {
        // 60 kB at 2 MB/s take 30 ms to cross: the rest is still waiting in the relay.
        assert.ok(relay.stats().pending > 0, "pending while the queue drains");
      }
      order.push(new DataView(data.buffer, data.byteOffset).getUint32(0));
    }
    assert.deepEqual(order, Array.from({ length: count }, (_, i) => i));
    // The relay's last send op settles on its own turn: give it a few (bounded) turns.
    for (let i = 0; i < 100 && relay.stats().pending > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    assert.equal(relay.stats().pending, 0, "drained once everything arrived");
  } finally {
    server.close();
    client.close();
  }
});
