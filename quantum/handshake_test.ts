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
  // Own process with --expose-gc, so the heap is measured after full collections.
  const probe = new URL("./_syn_flood_probe.ts", import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--expose-gc", probe],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  const { before, after, stats } = JSON.parse(new TextDecoder().decode(output.stdout));
  assert.equal(stats.synReceived, 100_000);
  assert.equal(stats.connections, 0);
  assert.equal(stats.pendingAccept, 0);
  assert.equal(stats.lingering, 0);
  assert.equal(stats.accepted, 0);
  const growth = after - before;
  assert.ok(growth < 512 * 1024, `heap grew ${(growth / 1024).toFixed(0)} KiB over 90k SYNs`);
});

Deno.test("a listener flooded with SYNs still accepts a real client", async () => {
  const clock = new VirtualClock({ auto: false });
  const net = new SimNetwork({ clock });
  const server = net.listen(9000);
  const listener = listen({ packetConn: server, clock });
  const random = new Random(9);
  let synAcks = 0;
  net.onSend = (data, from) => {
    if (from.port === 9000 && decodePacket(data).ok) synAcks++;
  };
  for (let i = 0; i < 5000; i++) {
    net.inject(syn(newId()), addr(1024 + random.int(60000)), server.addr);
  }
  await clock.advance(1);
  assert.equal(synAcks, 5000, "every SYN got a stateless SYN+ACK");
  assert.equal(listener.stats().connections, 0);
  const dialing = dial({ hostname: "10.0.0.1", port: 9000, packetConn: net.listen(), clock });
  await clock.advance(5);
  const client = await dialing;
  const accepted = listener.accept();
  await clock.advance(5);
  assert.equal((await accepted)?.id, client.id);
  assert.equal(listener.stats().connections, 1);
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

Deno.test("a client of a restarted listener is reset at once instead of idling out", async () => {
  const clock = new VirtualClock();
  const net = new SimNetwork({ clock, impairments: { delayMs: 1 } });
  const first = listen({ packetConn: net.listen(9000), clock });
  const client = await dial({ hostname: "10.0.0.1", port: 9000, packetConn: net.listen(), clock });
  const writer = client.writable.getWriter();
  await writer.write(new Uint8Array(100));
  const server = (await first.accept())!;
  await server.readable.getReader().read();
  // Crash: the old listener vanishes without its RSTs reaching anyone.
  net.filter = () => true;
  await first.close();
  net.filter = undefined;
  const restarted = listen({ packetConn: net.listen(9000), clock });
  const started = clock.now();
  await writer.write(new Uint8Array(100)).catch(() => {});
  const info = await client.closed;
  assert.equal(info.reason, "reset");
  assert.ok(clock.now() - started < 50, `reset after ${clock.now() - started} ms`);
  const drops = restarted.stats().drops;
  assert.equal((drops.unknown_connection ?? 0) + (drops.bad_cookie ?? 0), 1);
  assert.equal(restarted.stats().connections, 0);
  await restarted.close();
});

Deno.test("stateless resets for unknown connections are rate-limited to 100 per second", async () => {
  const clock = new VirtualClock({ auto: false });
  const net = new SimNetwork({ clock });
  const server = net.listen(9000);
  const listener = listen({ packetConn: server, clock });
  let resets = 0;
  net.onSend = (data, from) => {
    const r = decodePacket(data);
    if (from.port === 9000 && r.ok && r.packet.flags & FLAG.RST) resets++;
  };
  const stray = (id: string) =>
    encodePacket({
      flags: FLAG.ACK,
      connectionId: id,
      seq: 5,
      ack: 1,
      ackInfo: { window: 8, ackDelayMicros: 0, sack: [] },
      payload: new Uint8Array(10),
    });
  for (let i = 0; i < 1000; i++) net.inject(stray(newId()), addr(2000 + i), server.addr);
  await clock.advance(1);
  assert.equal(resets, 100);
  await clock.advance(1000);
  for (let i = 0; i < 1000; i++) net.inject(stray(newId()), addr(2000 + i), server.addr);
  await clock.advance(1);
  assert.equal(resets, 200);
  assert.equal(listener.stats().drops.unknown_connection, 2000);
  await listener.close();
});
