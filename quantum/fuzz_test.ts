/**
 * Bad input: ≥ 100k random, mutated and well-formed-but-bogus datagrams into a live listener
 * and a live connection, while an unrelated transfer on the same listener completes.
 */
import assert from "node:assert/strict";
import { newId } from "../kernel/mod.ts";
import { Random } from "./_random.ts";
import { crc32c, encodePacket, FLAG, type Packet } from "./wire.ts";
import { randomBytes, readAll, sha256, simHarness, udpHarness, writeAll } from "./_test_util.ts";
import type { Harness } from "./_test_util.ts";
import type { PacketConn } from "./packet_conn.ts";

function fuzzer(seed: number, victimId: string, captured: Uint8Array[]) {
  const random = new Random(seed);
  const fixChecksum = (bytes: Uint8Array) => {
    if (bytes.length >= 36) {
      new DataView(bytes.buffer, bytes.byteOffset).setUint32(
        bytes.length - 4,
        crc32c(bytes.subarray(0, bytes.length - 4)),
      );
    }
    return bytes;
  };
  const wellFormed = (id: string): Uint8Array => {
    // Checksum-valid packets with hostile fields: lying acks, bogus SACK, out-of-window seq.
    const flags = (random.int(256) & ~(FLAG.RST | FLAG.SYN)) | FLAG.ACK;
    const packet: Packet = {
      flags,
      connectionId: id,
      seq: random.next() < 0.5 ? random.int(2 ** 32) : 2000 + random.int(100_000),
      ack: random.next() < 0.5 ? random.int(2 ** 32) : random.int(50),
      ackInfo: {
        window: random.int(2 ** 32),
        ackDelayMicros: random.int(65536),
        sack: Array.from({ length: random.int(9) }, () => {
          const start = random.int(2 ** 32 - 10);
          return [start, start + 1 + random.int(8)] as const;
        }),
      },
      payload: random.fill(new Uint8Array(random.int(200))),
    };
    if (flags & (FLAG.SYN | FLAG.URG)) {
      packet.handshake = {
        maxPayload: random.int(65536),
        window: 1,
        cookie: random.fill(new Uint8Array(random.int(33))),
      };
    }
    if (flags & FLAG.FEC) {
      packet.fec = { group: 1, index: random.int(20), dataShards: 10, parityShards: 3 };
    }
    return encodePacket(packet);
  };
  return (): Uint8Array => {
    const kind = random.int(6);
    switch (kind) {
      case 0: // random bytes of any length
        return random.fill(new Uint8Array(random.int(1500)));
      case 1: { // truncated real datagram
        const base = captured[random.int(captured.length)]!;
        return base.slice(0, random.int(base.length));
      }
      case 2: { // bit flips in a real datagram, checksum sometimes repaired
        const bytes = captured[random.int(captured.length)]!.slice();
        for (let i = 0, n = 1 + random.int(4); i < n; i++) {
          bytes[random.int(bytes.length)]! ^= 1 << random.int(8);
        }
        return random.next() < 0.5 ? fixChecksum(bytes) : bytes;
      }
      case 3: { // lying payload length / SACK count, checksum repaired
        const bytes = captured[random.int(captured.length)]!.slice();
        bytes[30] = random.int(256);
        bytes[31] = random.int(256);
        if (bytes.length > 39 && bytes[5]! & FLAG.ACK) bytes[38] = random.int(256);
        return fixChecksum(bytes);
      }
      case 4: // well-formed, unknown connection id
        return wellFormed(newId());
      default: // well-formed, aimed at the live victim connection
        return wellFormed(victimId);
    }
  };
}

async function fuzz(
  harness: Harness,
  count: number,
  inject: (pc: Uint8Array, toClient: boolean) => void,
  pause: () => Promise<void>,
) {
  const listener = harness.listen();
  // The transfer that must survive.
  const size = 1 << 20;
  const data = randomBytes(size, 21);
  const bystanderServer = (async () => {
    const conn = (await listener.accept())!;
    const got = await readAll(conn);
    await conn.close();
    return got;
  })();
  const bystander = await harness.dial(listener);
  const writing = writeAll(bystander, data, 16 * 1024);
  // The victim: a live connection that receives hostile datagrams (on both ends).
  const victimServer = listener.accept();
  const victim = await harness.dial(listener);
  await victim.writable.getWriter().write(new Uint8Array(100));
  const victimConn = (await victimServer)!;
  const captured = [
    encodePacket({
      flags: FLAG.ACK | FLAG.PSH,
      connectionId: victim.id,
      seq: 1,
      ack: 1,
      ackInfo: { window: 10, ackDelayMicros: 0, sack: [[3, 5]] },
      payload: new Uint8Array(64),
    }),
    encodePacket({
      flags: FLAG.SYN,
      connectionId: newId(),
      seq: 0,
      ack: 0,
      handshake: { maxPayload: 1088, window: 8, cookie: new Uint8Array(0) },
      payload: new Uint8Array(0),
    }),
  ];
  const next = fuzzer(4242, victim.id, captured);
  for (let i = 0; i < count; i++) {
    inject(next(), i % 4 === 3);
    if (i % 500 === 499) await pause();
  }
  await writing;
  const got = await bystanderServer;
  await bystander.close();
  return { listener, got, data, victim, victimConn, bystander };
}

Deno.test("100k random and mutated datagrams: no crash, drops counted, the transfer beside them completes byte-exact", async () => {
  await using harness = simHarness({ delayMs: 1 });
  const attacker: Deno.NetAddr = { transport: "udp", hostname: "10.6.6.6", port: 666 };
  let listenerAddr: Deno.NetAddr | null = null;
  let clientAddr: Deno.NetAddr | null = null;
  const originalListen = harness.net.listen.bind(harness.net);
  const sockets: PacketConn[] = [];
  harness.net.listen = (port?: number) => {
    const conn = originalListen(port);
    sockets.push(conn);
    return conn;
  };
  const result = await fuzz(harness, 100_000, (bytes, toClient) => {
    listenerAddr ??= sockets[0]!.addr;
    clientAddr ??= sockets[2]?.addr ?? null; // 0 listener, 1 bystander, 2 victim client
    const to = toClient && clientAddr ? clientAddr : listenerAddr;
    harness.net.inject(bytes, attacker, to);
  }, () => new Promise((resolve) => harness.clock.setTimer(1, resolve)));
  assert.equal(result.got.sha256, sha256(result.data));
  const drops = result.listener.stats().drops;
  for (const reason of ["truncated", "bad_magic", "bad_checksum", "unknown_connection"] as const) {
    assert.ok((drops[reason] ?? 0) > 100, `listener ${reason}: ${drops[reason]}`);
  }
  assert.ok((drops.length_mismatch ?? 0) + (drops.bad_sack ?? 0) > 100);
  const victimDrops = result.victimConn.stats().drops;
  assert.ok(
    (victimDrops.bad_ack ?? 0) + (victimDrops.bad_sack ?? 0) > 100,
    JSON.stringify(victimDrops),
  );
  const clientDrops = result.victim.stats().drops;
  assert.ok(Object.values(clientDrops).reduce((a, b) => a + (b ?? 0), 0) > 1000);
  assert.equal(
    result.listener.stats().connections <= 2,
    true,
    "no connection was created by garbage",
  );
  result.victim.abort();
});

Deno.test("20k hostile datagrams over real UDP into a live listener: the transfer beside them completes", async () => {
  await using harness = udpHarness();
  const attacker = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  try {
    let target: Deno.NetAddr | null = null;
    const originalListen = harness.listen.bind(harness);
    harness.listen = (options) => {
      const listener = originalListen(options);
      target = listener.addr;
      return listener;
    };
    const sends: Promise<number>[] = [];
    const result = await fuzz(harness, 20_000, (bytes) => {
      sends.push(
        attacker.send(bytes, { transport: "udp", hostname: "127.0.0.1", port: target!.port }),
      );
    }, async () => {
      await Promise.allSettled(sends.splice(0));
    });
    assert.equal(result.got.sha256, sha256(result.data));
    const stats = result.listener.stats();
    assert.ok(stats.datagramsReceived > 1000); // the kernel may drop some under load
    assert.ok((stats.drops.bad_checksum ?? 0) > 20);
    result.victim.abort();
  } finally {
    attacker.close();
  }
});
