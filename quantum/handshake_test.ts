/** Stateless-cookie handshake: SYN floods cost the listener nothing. */
import assert from "node:assert/strict";
import { newId } from "../kernel/mod.ts";
import { Random } from "./_random.ts";
import { VirtualClock } from "./clock.ts";
import { CookieJar } from "./cookie.ts";
import { dial, listen } from "./endpoint.ts";
import { SimNetwork } from "./sim_net.ts";
import { decodePacket, encodePacket, FLAG } from "./wire.ts";
import { readAll, sha256, writeAll } from "./_test_util.ts";

const addr = (port: number, hostname = "10.0.0.2"): Deno.NetAddr => ({
  transport: "udp",
  hostname,
  port,
});

function syn(id: string): Uint8Array {
  return encodePacket({
    flags: FLAG.SYN,
    connectionId: id,
    seq: 0,
    ack: 0,
    handshake: { maxPayload: 1088, window: 1024, cookie: new Uint8Array(0) },
    payload: new Uint8Array(0),
  });
}

Deno.test("100k spoofed SYNs from random ports leave the connection table empty and memory flat", async () => {
  const clock = new VirtualClock({ auto: false });
  const net = new SimNetwork({ clock });
  const server = net.listen(9000);
  const listener = listen({ packetConn: server, clock });
  const random = new Random(9);
  let synAcks = 0;
  net.onSend = (data, from) => {
    if (from.port === 9000 && decodePacket(data).ok) synAcks++;
  };
  const flood = async (count: number) => {
    for (let sent = 0; sent < count; sent += 1000) {
      for (let i = 0; i < 1000; i++) {
        const from = addr(1024 + random.int(60000), `10.${random.int(256)}.${random.int(256)}.1`);
        net.inject(syn(newId()), from, server.addr);
      }
      await clock.advance(1);
    }
  };
  await flood(10_000); // warm up
  const heapBefore = Deno.memoryUsage().heapUsed;
  await flood(90_000);
  const heapAfter = Deno.memoryUsage().heapUsed;
  const stats = listener.stats();
  assert.equal(stats.synReceived, 100_000);
  assert.equal(synAcks, 100_000, "every SYN got a stateless SYN+ACK");
  assert.equal(stats.connections, 0);
  assert.equal(stats.pendingAccept, 0);
  assert.equal(stats.lingering, 0);
  assert.equal(stats.accepted, 0);
  const growth = heapAfter - heapBefore;
  assert.ok(growth < 16 * 1024 * 1024, `heap grew ${(growth / 1048576).toFixed(1)} MiB`);
  // The listener still serves a real client afterwards.
  const dialing = dial({ hostname: "10.0.0.1", port: 9000, packetConn: net.listen(), clock });
  await clock.advance(5);
  const client = await dialing;
  const accepted = listener.accept();
  await clock.advance(5);
  assert.equal((await accepted)?.id, client.id);
  client.abort();
  await listener.close();
});

Deno.test("a cookie verifies only for its own address, connection id and time window", () => {
  const jar = new CookieJar({ validityMs: 10_000 });
  const id = newId();
  const cookie = jar.issue(addr(5000), id, 50_000);
  assert.equal(cookie.length, 20);
  assert.ok(jar.verify(cookie, addr(5000), id, 50_000));
  assert.ok(jar.verify(cookie, addr(5000), id, 59_999));
  assert.equal(jar.verify(cookie, addr(5001), id, 50_000), false);
  assert.equal(jar.verify(cookie, addr(5000, "10.9.9.9"), id, 50_000), false);
  assert.equal(jar.verify(cookie, addr(5000), newId(), 50_000), false);
  assert.equal(jar.verify(cookie, addr(5000), id, 61_000), false);
  const tampered = cookie.slice();
  tampered[10]! ^= 1;
  assert.equal(jar.verify(tampered, addr(5000), id, 50_000), false);
  assert.equal(new CookieJar().verify(cookie, addr(5000), id, 50_000), false, "other secret");
});

Deno.test("a forged cookie echo is dropped as bad_cookie and allocates nothing", async () => {
  const clock = new VirtualClock({ auto: false });
  const net = new SimNetwork({ clock });
  const server = net.listen(9000);
  const listener = listen({ packetConn: server, clock });
  for (let i = 0; i < 100; i++) {
    net.inject(
      encodePacket({
        flags: FLAG.ACK | FLAG.URG,
        connectionId: newId(),
        seq: 1,
        ack: 1,
        handshake: { maxPayload: 1088, window: 64, cookie: new Uint8Array(20).fill(i) },
        ackInfo: { window: 64, ackDelayMicros: 0, sack: [] },
        payload: new Uint8Array(0),
      }),
      addr(7000 + i),
      server.addr,
    );
  }
  await clock.advance(1);
  assert.equal(listener.stats().drops.bad_cookie, 100);
  assert.equal(listener.stats().connections, 0);
  await listener.close();
});

Deno.test("a client whose cookie echo is lost still connects: its data packets carry the cookie", async () => {
  const clock = new VirtualClock();
  const net = new SimNetwork({ clock, impairments: { delayMs: 1 } });
  const server = net.listen(9000);
  const listener = listen({ packetConn: server, clock });
  let droppedEcho = false;
  net.filter = (data, from) => {
    const r = decodePacket(data);
    if (!droppedEcho && from.port !== 9000 && r.ok && r.packet.flags & FLAG.URG) {
      droppedEcho = true; // the pure cookie echo
      return true;
    }
    return false;
  };
  const client = await dial({ hostname: "10.0.0.1", port: 9000, packetConn: net.listen(), clock });
  const data = new Uint8Array(50_000).map((_, i) => i % 251);
  const writing = writeAll(client, data);
  const conn = (await listener.accept())!;
  const got = await readAll(conn);
  await writing;
  assert.ok(droppedEcho);
  assert.equal(got.sha256, sha256(data));
  await conn.close();
  await client.close();
  await listener.close();
});
