import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { randomBytes, readAll, sha256, writeAll } from "./_test_util.ts";
import { dial, listen } from "./endpoint.ts";
import { QuantumMetrics } from "./metrics.ts";
import { startRelay } from "./relay.ts";

/** The value of the sample `name` whose labels include `labels` (0 when absent). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name + "{") && !line.startsWith(name + " ")) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) {
      return Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return 0;
}

Deno.test("QuantumMetrics counts goodput, retransmits, RTT and drops of a lossy real-UDP transfer", async () => {
  const registry = new Registry();
  const metrics = new QuantumMetrics(registry);
  const listener = metrics.observeListener("server", listen({ hostname: "127.0.0.1", port: 0 }));
  await using relay = startRelay({
    target: { hostname: "127.0.0.1", port: listener.addr.port },
    impairments: { loss: 0.1, seed: 7 },
  });
  const size = 256 * 1024;
  const data = randomBytes(size, 3);
  try {
    const server = (async () => {
      const conn = await listener.accept();
      assert.ok(conn);
      const result = await readAll(conn);
      await conn.close();
      return { result, conn };
    })();
    const client = metrics.trackConnection(
      "client",
      await dial({ hostname: "127.0.0.1", port: relay.addr.port }),
    );
    await writeAll(client, data);
    const { result, conn } = await server;
    await client.close();
    await Promise.all([client.closed, conn.closed]);
    assert.equal(result.length, size);
    assert.equal(result.sha256, sha256(data));
    // Garbage straight at the listener: dropped and counted by reason. The listener counts
    // a datagram once its receive loop read it; there is no event for that, so yield to it.
    const listenerDrops = () =>
      Object.values(listener.stats().drops).reduce((a, b) => a + (b ?? 0), 0);
    const baseline = listenerDrops();
    const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    for (let i = 0; i < 5; i++) {
      await socket.send(new Uint8Array(40), {
        transport: "udp",
        hostname: "127.0.0.1",
        port: listener.addr.port,
      });
    }
    socket.close();
    for (let turn = 0; listenerDrops() < baseline + 5; turn++) {
      assert.ok(turn < 1000, "the garbage datagrams were never counted");
      await new Promise((resolve) => setTimeout(resolve, 1));
    }

    const text = await registry.metrics();
    const clientStats = client.stats();
    const serverStats = conn.stats();
    assert.ok(clientStats.retransmits > 0, "10% loss caused retransmissions");
    assert.equal(
      sample(text, "aetherflow_quantum_retransmits_total", { listener: "client" }),
      clientStats.retransmits,
    );
    assert.equal(
      sample(text, "aetherflow_quantum_goodput_bytes_total", { listener: "server" }),
      size,
    );
    assert.equal(
      sample(text, "aetherflow_quantum_packets_received_total", { listener: "server" }),
      serverStats.packetsReceived,
    );
    assert.equal(
      sample(text, "aetherflow_quantum_connections_accepted_total", { listener: "server" }),
      1,
    );
    // One observation per closed connection that had an RTT: the receiving side gets samples
    // only when its handshake reply's ACK was not among the lost datagrams.
    assert.equal(
      sample(text, "aetherflow_quantum_rtt_seconds_count", { listener: "server" }),
      serverStats.rttMs > 0 ? 1 : 0,
    );
    assert.equal(sample(text, "aetherflow_quantum_rtt_seconds_count", { listener: "client" }), 1);
    let drops = 0;
    for (const line of text.split("\n")) {
      if (line.startsWith('aetherflow_quantum_drops_total{listener="server"')) {
        drops += Number(line.slice(line.lastIndexOf(" ") + 1));
      }
    }
    const expected = Object.values(listener.stats().drops).reduce((a, b) => a + (b ?? 0), 0) +
      Object.values(serverStats.drops).reduce((a, b) => a + (b ?? 0), 0);
    assert.equal(drops, expected);
    assert.ok(drops >= 5, `the 5 garbage datagrams were counted (${drops})`);
    assert.ok(!text.includes(client.id), "no connection id as a label");
  } finally {
    await listener.close();
  }
});
