/**
 * Batched UDP I/O (`sendmmsg`/`recvmmsg` through FFI) on real loopback sockets: order, many
 * datagrams, both address families, fallbacks (oversize datagrams, no FFI permission) and the
 * address spelling that must match Deno's own receive.
 */
import assert from "node:assert/strict";
import { formatIpv6, parseIpv4, parseIpv6 } from "./_udp_batch.ts";
import { listenUdp, UdpPacketConn } from "./packet_conn.ts";
import { decodePacket, encodePacket, FLAG, type Packet } from "./wire.ts";

const RCVBUF = 4 << 20;

function hasIpv6Loopback(): boolean {
  try {
    Deno.listenDatagram({ hostname: "::1", port: 0, transport: "udp" }).close();
    return true;
  } catch {
    return false;
  }
}

/** Datagram `i` of a numbered sequence: 4-byte index then filler, `size` bytes in all. */
function numbered(i: number, size = 100): Uint8Array {
  const out = new Uint8Array(size).fill(i & 0xff);
  new DataView(out.buffer).setUint32(0, i);
  return out;
}

/** Receive `count` datagrams the way the endpoint does: one wake-up, then the ready batch. */
async function receiveMany(
  conn: UdpPacketConn,
  count: number,
): Promise<Array<{ data: Uint8Array; from: Deno.NetAddr; batched: boolean }>> {
  const buffer = new Uint8Array(65536);
  const out: Array<{ data: Uint8Array; from: Deno.NetAddr; batched: boolean }> = [];
  while (out.length < count) {
    let received = await conn.receive(buffer);
    let batched = false;
    while (received) {
      out.push({ data: received[0].slice(), from: { ...received[1] }, batched });
      received = conn.tryReceive();
      batched = true;
    }
  }
  return out;
}

function indices(received: Array<{ data: Uint8Array }>): number[] {
  return received.map(({ data }) => new DataView(data.buffer).getUint32(0));
}

Deno.test("IPv4 and IPv6 text parses and prints like Deno (Rust) spells addresses", () => {
  assert.deepEqual(parseIpv4("127.0.0.1"), new Uint8Array([127, 0, 0, 1]));
  for (const bad of ["1.2.3", "1.2.3.256", "a.b.c.d", "1..2.3", "localhost"]) {
    assert.equal(parseIpv4(bad), undefined, bad);
  }
  const cases: Array<[string, string]> = [
    ["::", "::"],
    ["::1", "::1"],
    ["0:0:0:0:0:0:0:1", "::1"],
    ["fe80::1", "fe80::1"],
    ["2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // first of two equal zero runs
    ["1:0:0:2:0:0:0:3", "1:0:0:2::3"], // the longest zero run
    ["1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"], // a single zero word stays
    ["::ffff:127.0.0.1", "::ffff:127.0.0.1"],
    ["::ffff:7f00:1", "::ffff:127.0.0.1"],
  ];
  for (const [text, canonical] of cases) {
    const bytes = parseIpv6(text);
    assert.ok(bytes, text);
    assert.equal(formatIpv6(bytes), canonical, text);
  }
  for (const bad of ["1::2::3", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "fe80::1%eth0", "12345::"]) {
    assert.equal(parseIpv6(bad), undefined, bad);
  }
});

Deno.test("batched sockets deliver 2,000 datagrams in order with the sender's address", async () => {
  const a = listenUdp({ hostname: "127.0.0.1", port: 0, receiveBufferBytes: RCVBUF });
  const b = listenUdp({ hostname: "127.0.0.1", port: 0, receiveBufferBytes: RCVBUF });
  try {
    assert.ok(a.batched && b.batched, "FFI is allowed in tests: both sockets batch");
    const count = 2000;
    const receiving = receiveMany(b, count);
    // Bursts of 200 in one turn (several sendmmsg calls each), with turns in between.
    for (let i = 0; i < count; i += 200) {
      for (let j = i; j < i + 200; j++) a.send(numbered(j), b.addr);
      await Promise.resolve();
    }
    const received = await receiving;
    assert.deepEqual(indices(received), Array.from({ length: count }, (_, i) => i));
    for (const { from } of received) {
      assert.deepEqual(from, { transport: "udp", hostname: "127.0.0.1", port: a.addr.port });
    }
    const viaRecvmmsg = received.filter((r) => r.batched).length;
    assert.ok(viaRecvmmsg > count / 2, `${viaRecvmmsg} of ${count} came through recvmmsg`);
    assert.equal(a.sendErrors, 0);
  } finally {
    a.close();
    b.close();
  }
});

Deno.test("sendPacket encodes into the batch slots: 3,000 packets in one turn arrive intact, in order", async () => {
  // 47 full batches in one turn: each slot is reused many times (and what a full socket buffer
  // refuses goes to the async path as a copy of its slot).
  const a = listenUdp({ hostname: "127.0.0.1", port: 0 });
  const b = listenUdp({ hostname: "127.0.0.1", port: 0, receiveBufferBytes: RCVBUF });
  try {
    assert.ok(a.batched);
    const count = 3000;
    const packet = (seq: number): Packet => ({
      flags: FLAG.ACK,
      connectionId: "01890a5d-ac96-774b-bcce-b302099a8057",
      seq,
      ack: 0,
      ackInfo: { window: 64, ackDelayMicros: 0, sack: [] },
      payload: numbered(seq, 1000),
    });
    const receiving = receiveMany(b, count);
    for (let i = 0; i < count; i++) a.sendPacket(packet(i), b.addr);
    const received = await receiving;
    for (let i = 0; i < count; i++) {
      const decoded = decodePacket(received[i]!.data);
      assert.ok(decoded.ok, `datagram ${i} decodes`);
      assert.equal(decoded.packet.seq, i);
      assert.deepEqual(received[i]!.data, encodePacket(packet(i)));
    }
    assert.equal(a.sendErrors, 0);
  } finally {
    a.close();
    b.close();
  }
});

Deno.test("runs of equal-size datagrams (one GSO send each) arrive with their own sizes", async () => {
  const a = listenUdp({ hostname: "127.0.0.1", port: 0 });
  const b = listenUdp({ hostname: "127.0.0.1", port: 0, receiveBufferBytes: RCVBUF });
  const c = listenUdp({ hostname: "127.0.0.1", port: 0, receiveBufferBytes: RCVBUF });
  try {
    // Runs end at a shorter datagram, a larger one, another address, 64 segments or ~60 KB.
    const sizes = [
      ...new Array(5).fill(1131),
      500,
      ...new Array(3).fill(1131),
      1200,
      40,
      40,
      ...new Array(100).fill(1232),
      7,
    ];
    let toC = 0;
    sizes.forEach((size, i) => {
      if (i === 3) {
        a.send(numbered(1000, 64), c.addr); // splits the first run
        toC++;
      }
      a.send(numbered(i, size), b.addr);
    });
    const received = await receiveMany(b, sizes.length);
    assert.deepEqual(indices(received), sizes.map((_, i) => i));
    assert.deepEqual(received.map(({ data }) => data.length), sizes);
    assert.deepEqual(indices(await receiveMany(c, toC)), [1000]);
    assert.equal(a.sendErrors, 0);
  } finally {
    a.close();
    b.close();
    c.close();
  }
});

Deno.test("a datagram too large for a batch slot keeps its place in the order", async () => {
  const a = listenUdp({ hostname: "127.0.0.1", port: 0 });
  // A plain receiver: a batched one drops datagrams larger than its slots (see next test).
  const b = listenUdp({ hostname: "127.0.0.1", port: 0, batchedIo: false });
  try {
    assert.ok(a.batched);
    assert.ok(!b.batched);
    const sizes = [100, 100, 9000, 100, 3000, 100];
    sizes.forEach((size, i) => a.send(numbered(i, size), b.addr));
    const received = await receiveMany(b, sizes.length);
    assert.deepEqual(indices(received), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(received.map(({ data }) => data.length), sizes);
  } finally {
    a.close();
    b.close();
  }
});

Deno.test("a batched receiver drops and counts datagrams larger than its slots", async () => {
  const a = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const b = listenUdp({ hostname: "127.0.0.1", port: 0, receiveBufferBytes: RCVBUF });
  try {
    // All queued before b looks: the first arrives through Deno's receive (any size), the
    // rest through recvmmsg.
    for (const [i, size] of [[0, 100], [1, 5000], [2, 100]] as const) {
      await a.send(numbered(i, size), b.addr);
    }
    const received = await receiveMany(b, 2);
    assert.deepEqual(indices(received), [0, 2]);
    assert.equal(b.receiveTruncated, 1);
  } finally {
    a.close();
    b.close();
  }
});

Deno.test("datagrams sent right before close still leave", async () => {
  const a = listenUdp({ hostname: "127.0.0.1", port: 0 });
  const b = listenUdp({ hostname: "127.0.0.1", port: 0 });
  try {
    for (let i = 0; i < 10; i++) a.send(numbered(i), b.addr);
    a.close();
    a.send(numbered(99), b.addr); // after close: ignored
    assert.deepEqual(indices(await receiveMany(b, 10)), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  } finally {
    a.close();
    b.close();
  }
});

Deno.test("a send the kernel refuses is counted and the next ones still leave", async () => {
  const a = listenUdp({ hostname: "127.0.0.1", port: 0 });
  const b = listenUdp({ hostname: "127.0.0.1", port: 0 });
  try {
    a.send(numbered(0), b.addr);
    a.send(numbered(1), { transport: "udp", hostname: "::1", port: b.addr.port }); // wrong family
    a.send(numbered(2), b.addr);
    assert.deepEqual(indices(await receiveMany(b, 2)), [0, 2]);
    assert.equal(a.sendErrors, 1);
  } finally {
    a.close();
    b.close();
  }
});

Deno.test({
  name: "IPv6 and dual-stack: batched addresses are spelled like Deno's receive",
  ignore: !hasIpv6Loopback(),
  fn: async () => {
    const v6 = listenUdp({ hostname: "::1", port: 0 });
    const dual = listenUdp({ hostname: "::", port: 0, receiveBufferBytes: RCVBUF });
    const v4 = listenUdp({ hostname: "127.0.0.1", port: 0 });
    try {
      assert.ok(v6.batched && dual.batched && v4.batched);
      for (let i = 0; i < 300; i++) v6.send(numbered(i), { ...dual.addr, hostname: "::1" });
      const fromV6 = await receiveMany(dual, 300);
      assert.deepEqual(indices(fromV6), Array.from({ length: 300 }, (_, i) => i));
      assert.ok(fromV6.some((r) => r.batched) && fromV6.some((r) => !r.batched));
      assert.ok(fromV6.every(({ from }) => from.hostname === "::1" && from.port === v6.addr.port));

      for (let i = 0; i < 300; i++) v4.send(numbered(i), { ...dual.addr, hostname: "127.0.0.1" });
      const fromV4 = await receiveMany(dual, 300);
      assert.deepEqual(indices(fromV4), Array.from({ length: 300 }, (_, i) => i));
      assert.ok(fromV4.some((r) => r.batched) && fromV4.some((r) => !r.batched));
      // Deno reports IPv4 peers of a dual-stack socket as IPv4-mapped IPv6.
      assert.ok(fromV4.every(({ from }) => from.hostname === "::ffff:127.0.0.1"));

      // A dual-stack socket answers an IPv4 peer under either spelling.
      dual.send(numbered(7), fromV4[0]!.from);
      dual.send(numbered(8), { ...fromV4[0]!.from, hostname: "127.0.0.1" });
      assert.deepEqual(indices(await receiveMany(v4, 2)), [7, 8]);
    } finally {
      v6.close();
      dual.close();
      v4.close();
    }
  },
});

Deno.test({
  name: "an IPv4 and an IPv6 socket on the same port each batch on their own fd",
  ignore: !hasIpv6Loopback(),
  fn: async () => {
    const v4 = listenUdp({ hostname: "127.0.0.1", port: 0 });
    let v6: UdpPacketConn;
    try {
      v6 = listenUdp({ hostname: "::1", port: v4.addr.port });
    } catch {
      v4.close();
      return; // port taken on ::1 by someone else
    }
    const peer = listenUdp({ hostname: "127.0.0.1", port: 0 });
    try {
      assert.ok(v4.batched && v6.batched);
      v4.send(numbered(4), peer.addr);
      assert.deepEqual(indices(await receiveMany(peer, 1)), [4]);
      peer.send(numbered(5), v4.addr);
      assert.deepEqual(indices(await receiveMany(v4, 1)), [5]);
    } finally {
      v4.close();
      v6.close();
      peer.close();
    }
  },
});

Deno.test("two sockets sharing one address (reuseAddress) are not batched: whose fd is whose?", () => {
  const first = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
    reuseAddress: true,
  });
  const second = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: (first.addr as Deno.NetAddr).port,
    transport: "udp",
    reuseAddress: true,
  });
  const a = new UdpPacketConn(first);
  const b = new UdpPacketConn(second);
  try {
    assert.ok(!a.batched && !b.batched);
  } finally {
    a.close();
    b.close();
  }
  const alone = new UdpPacketConn(
    Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp", reuseAddress: true }),
  );
  assert.ok(alone.batched, "one socket with reuseAddress is still found");
  alone.close();
});

Deno.test("without --allow-ffi a socket uses Deno's ops and still works", async () => {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      script,
      `import { listenUdp } from ${JSON.stringify(import.meta.resolve("./packet_conn.ts"))};
const a = listenUdp({ hostname: "127.0.0.1", port: 0 });
const b = listenUdp({ hostname: "127.0.0.1", port: 0 });
for (let i = 0; i < 5; i++) a.send(new Uint8Array([i]), b.addr);
const got = [];
const buffer = new Uint8Array(2048);
while (got.length < 5) got.push((await b.receive(buffer))[0][0]);
console.log(JSON.stringify({ batched: a.batched || b.batched, got }));
a.close();
b.close();
`,
    );
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-config", "--unstable-net", "--allow-net", "--allow-read", script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, stderr);
    const result = JSON.parse(new TextDecoder().decode(output.stdout));
    assert.deepEqual(result, { batched: false, got: [0, 1, 2, 3, 4] });
  } finally {
    await Deno.remove(script);
  }
});
