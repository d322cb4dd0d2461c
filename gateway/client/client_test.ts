import assert from "node:assert/strict";
import type { Json, Op } from "../../statesync/json0/mod.ts";
import { AetherFlowClient, type OnlineSource } from "./client.ts";
import { ManualClock } from "./clock.ts";
import type { DocHandle } from "./document.ts";
import { type FakeConn, FakeGateway, seeded, settle } from "./_fake_gateway.ts";

const DOC = "doc-1";
const TEXT = ["text"];

function ins(offset: number, text: string): Op {
  return [{ path: TEXT, action: { type: "text_insert", offset, text } }];
}

function del(offset: number, length: number): Op {
  return [{ path: TEXT, action: { type: "text_delete", offset, length } }];
}

function textOf(doc: DocHandle): string {
  return (doc.content as { text: string }).text;
}

class FakeOnline implements OnlineSource {
  online = true;
  #listeners = new Set<(online: boolean) => void>();
  isOnline(): boolean {
    return this.online;
  }
  subscribe(listener: (online: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  set(online: boolean): void {
    this.online = online;
    for (const listener of this.#listeners) listener(online);
  }
}

function setup(text = "", content?: Json) {
  const clock = new ManualClock();
  const server = new FakeGateway(clock);
  server.createDocument(DOC, content ?? { text });
  const clients: AetherFlowClient[] = [];
  function client(name: string, options: { random?: () => number; online?: OnlineSource } = {}) {
    const c = new AetherFlowClient({
      url: "ws://fake/ws",
      auth: server.issuer(name),
      socket: server.socketFactory,
      clock,
      random: options.random ?? (() => 0.5),
      ...(options.online === undefined ? {} : { online: options.online }),
    });
    clients.push(c);
    c.connect();
    return c;
  }
  async function open(c: AetherFlowClient): Promise<DocHandle> {
    const opened = c.open(DOC);
    await server.run();
    return await opened;
  }
  async function closeAll() {
    const closing = clients.map((c) => c.close());
    await server.run();
    await Promise.all(closing);
  }
  return { clock, server, client, open, closeAll };
}

Deno.test("open() loads the document and local edits reach the server", async () => {
  const t = setup("hello");
  const a = await t.open(t.client("alice"));
  assert.equal(textOf(a), "hello");
  assert.equal(a.version, 0);
  a.submit(ins(5, " world"));
  assert.equal(textOf(a), "hello world", "applied optimistically");
  assert.equal(a.queued, 1);
  await t.server.run();
  assert.equal((t.server.content(DOC) as { text: string }).text, "hello world");
  assert.equal(a.version, 1);
  assert.equal(a.queued, 0);
  await t.closeAll();
});

Deno.test("only one op is in flight; later edits are composed and sent after the ack", async () => {
  const t = setup();
  const a = await t.open(t.client("alice"));
  a.submit(ins(0, "a"));
  a.submit(ins(1, "b"));
  a.submit(ins(2, "c"));
  const ops = () => t.server.received.filter((m) => m.type === "op");
  // Deliver only client→server traffic: one op went out.
  await settle();
  assert.equal(t.server.live[0]!.inbox.filter((m) => m.includes('"op"')).length, 1);
  await t.server.run();
  assert.equal(ops().length, 2, "first op alone, then b+c composed into one");
  assert.deepEqual((ops()[1]!.components as unknown[]).length, 1, "typing run merged");
  assert.equal(textOf(a), "abc");
  assert.equal(t.server.version(DOC), 2);
  await t.closeAll();
});

Deno.test("an ack that arrives before earlier remote ops waits for them; nothing is applied twice", async () => {
  const t = setup("0123456789");
  const alice = t.client("alice");
  const bob = t.client("bob");
  const a = await t.open(alice);
  const b = await t.open(bob);
  const [connA, connB] = t.server.live;
  b.submit(ins(0, "B"));
  a.submit(ins(10, "A"));
  await settle();
  // Server applies bob's op first (v1), then alice's (v2).
  await deliver(t.server, connB!, "inbox");
  await deliver(t.server, connA!, "inbox");
  // Alice gets her ack (v2) BEFORE bob's op event (v1).
  await deliver(t.server, connA!, "replies");
  assert.equal(a.version, 0, "ack for v2 cannot complete before v1 arrived");
  assert.equal(a.queued, 1);
  await deliver(t.server, connA!, "events"); // v1: bob's op, transformed against alice's
  assert.equal(textOf(a), "B0123456789A");
  await deliver(t.server, connA!, "events"); // v2: alice's own op comes back
  assert.equal(a.version, 2);
  assert.equal(a.queued, 0);
  await t.server.run();
  assert.equal(textOf(a), "B0123456789A");
  assert.equal(textOf(b), "B0123456789A");
  assert.equal(t.server.applied, 2);
  await t.closeAll();
});

Deno.test("remote ops are transformed against in-flight and pending ops (server order wins ties)", async () => {
  const t = setup("xy");
  const a = await t.open(t.client("alice"));
  const b = await t.open(t.client("bob"));
  const [connA, connB] = t.server.live;
  a.submit(ins(1, "A")); // in flight
  await settle();
  a.submit(ins(2, "a")); // pending behind it
  b.submit(ins(1, "B")); // same place as alice's first op
  await settle();
  await deliver(t.server, connB!, "inbox"); // bob's op applied first: it wins the tie
  await deliver(t.server, connA!, "events"); // alice sees bob's op while hers is in flight
  assert.equal(textOf(a), "xBAay");
  await t.server.run();
  assert.equal(textOf(a), "xBAay");
  assert.equal(textOf(b), "xBAay");
  assert.deepEqual(t.server.content(DOC), { text: "xBAay" });
  await t.closeAll();
});

Deno.test("an op in flight when the connection drops is resent with the same client op id and applied once", async () => {
  for (const serverGotIt of [true, false]) {
    const t = setup("abc");
    const alice = t.client("alice");
    const a = await t.open(alice);
    a.submit(ins(3, "!"));
    await settle();
    const conn = t.server.live[0]!;
    const sentId = JSON.parse(conn.inbox[0]!).client_op_id;
    if (serverGotIt) await deliver(t.server, conn, "inbox"); // applied, ack and event lost
    t.server.drop(conn);
    await settle();
    assert.equal(alice.status, "reconnecting");
    a.submit(ins(0, ">")); // typed while disconnected: queued
    assert.equal(textOf(a), ">abc!");
    t.clock.advance(10_000); // backoff timer fires
    await t.server.run();
    assert.equal(alice.status, "online");
    const ids = t.server.received.filter((m) => m.type === "op").map((m) => m.client_op_id);
    if (serverGotIt) {
      // The resubscribe replayed it (recognised by client op id): no resend was needed.
      assert.equal(ids.length, 2);
      assert.equal(ids[0], sentId);
      assert.notEqual(ids[1], sentId);
    } else {
      assert.equal(ids[0], sentId, "the lost op was resent with its client op id");
    }
    assert.equal(t.server.applied, 2, `serverGotIt=${serverGotIt}: each edit applied once`);
    assert.deepEqual(t.server.content(DOC), { text: ">abc!" });
    assert.equal(textOf(a), ">abc!");
    assert.equal(a.queued, 0);
    await t.closeAll();
  }
});

Deno.test("a resend of an op the server already applied is de-duplicated, not applied twice", async () => {
  const t = setup("abc");
  const a = await t.open(t.client("alice"));
  t.server.rejectOps = undefined;
  a.submit(ins(0, "x"));
  await settle();
  const conn = t.server.live[0]!;
  await deliver(t.server, conn, "inbox"); // applied at v1
  // The ack and the event are slow; the gateway reports a transient failure meanwhile.
  conn.replies.unshift(JSON.stringify({
    type: "error",
    id: JSON.parse(JSON.stringify(t.server.received.at(-1)!.id)),
    status: "UNAVAILABLE",
    message: "statesync stream restarted",
  }));
  const slow = [...conn.replies.splice(1), ...conn.events.splice(0)];
  await deliver(t.server, conn, "replies");
  t.clock.advance(10_000); // retry timer: resend with the same client op id
  await t.server.run();
  assert.equal(t.server.duplicates, 1);
  assert.equal(t.server.applied, 1);
  for (const message of slow) conn.socket.onmessage?.({ data: message });
  await t.server.run();
  assert.deepEqual(t.server.content(DOC), { text: "xabc" });
  assert.equal(textOf(a), "xabc");
  assert.equal(a.version, 1);
  assert.equal(a.queued, 0);
  await t.closeAll();
});

Deno.test("a paste larger than the gateway's message limit arrives in several ops", async () => {
  const t = setup("");
  const alice = t.client("alice");
  const a = await t.open(alice);
  const b = await t.open(t.client("bob"));
  const big = "0123456789".repeat(20_000);
  a.submit(ins(0, big));
  await t.server.run();
  assert.equal(alice.status, "online", "never closed for a too-big message");
  assert.ok(t.server.applied > 3);
  assert.equal(textOf(b), big);
  assert.deepEqual(t.server.content(DOC), { text: big });
  await t.closeAll();
});

Deno.test("a subscribe that fails transiently is retried with backoff; a missing document fails open()", async () => {
  const t = setup("abc");
  const alice = t.client("alice");
  const b = await t.open(t.client("bob"));
  t.server.failSubscribes = 2;
  const opening = alice.open(DOC);
  await t.server.run();
  t.clock.advance(10_000);
  await t.server.run();
  t.clock.advance(10_000);
  await t.server.run();
  const a = await opening;
  assert.equal(textOf(a), "abc");
  b.submit(ins(3, "d"));
  await t.server.run();
  assert.equal(textOf(a), "abcd");
  const missing = alice.open("no-such-doc");
  await t.server.run();
  await assert.rejects(missing, (e: Error & { status?: string }) => e.status === "NOT_FOUND");
  await t.closeAll();
});

Deno.test("open() called twice for one document resolves both callers with the same handle", async () => {
  const t = setup("x");
  const alice = t.client("alice");
  const first = alice.open(DOC);
  const second = alice.open(DOC);
  await t.server.run();
  const [a1, a2] = await Promise.all([first, second]);
  assert.equal(a1, a2);
  assert.equal(textOf(a1), "x");
  await t.closeAll();
});

Deno.test("a socket that never opens is abandoned after the connect timeout; an idle one after the idle timeout", async () => {
  const t = setup("x");
  const alice = t.client("alice");
  await settle();
  assert.equal(t.server.conns.length, 1);
  t.clock.advance(10_000); // never delivered the open: connect timeout
  await settle();
  assert.equal(alice.status, "reconnecting");
  t.clock.advance(10_000);
  await t.server.run();
  assert.equal(alice.status, "online");
  t.clock.advance(44_000); // authenticated: only the idle timeout (45 s) applies now
  await settle();
  assert.equal(alice.status, "online");
  t.clock.advance(1_000); // 45 s without any message (the server would have pinged)
  await settle();
  assert.equal(alice.status, "reconnecting");
  await t.closeAll();
  await assert.rejects(alice.open(DOC), /client is closed/);
});

Deno.test("a resubscribe resumes from the last seen version and receives exactly the missed ops", async () => {
  const t = setup();
  const alice = t.client("alice");
  const a = await t.open(alice);
  const b = await t.open(t.client("bob"));
  b.submit(ins(0, "1"));
  await t.server.run();
  assert.equal(a.version, 1);
  t.server.drop(t.server.live[0]!);
  await settle();
  b.submit(ins(1, "2"));
  await t.server.run();
  b.submit(ins(2, "3"));
  await t.server.run();
  const synced = a.events.next("synced");
  t.clock.advance(10_000);
  await t.server.run();
  const resync = await synced;
  assert.deepEqual(resync, { version: 3, replayed: 2, resumed: true });
  const subscribes = t.server.received.filter((m) => m.type === "subscribe");
  assert.equal(subscribes.at(-1)!.from_version, 1);
  assert.equal(textOf(a), "123");
  await t.closeAll();
});

Deno.test("reconnect delays grow exponentially with full jitter under the cap", async () => {
  const t = setup();
  const draws = [0.9, 0.1, 0.5, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99];
  let i = 0;
  const alice = t.client("alice", { random: () => draws[i++ % draws.length]! });
  await t.open(alice);
  const delays: number[] = [];
  alice.events.on("status", (s) => {
    if (s.status === "reconnecting" && s.delayMs !== undefined) delays.push(s.delayMs);
  });
  // The gateway is gone: every attempt's socket is dropped before it opens.
  for (let attempt = 0; attempt < 9; attempt++) {
    for (const conn of t.server.live) t.server.drop(conn);
    await settle();
    t.clock.advance(t.clock.nextAt! - t.clock.now());
    await settle();
  }
  const ceilings = [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000];
  assert.deepEqual(delays, ceilings.map((c, k) => Math.floor(c * draws[k]!)));
  // Back: the attempt already under way succeeds and the attempt counter resets.
  await t.server.run();
  assert.equal(alice.status, "online");
  for (const conn of t.server.live) t.server.drop(conn);
  await settle();
  assert.ok(delays.at(-1)! <= 250, "after a successful connect the backoff starts over");
  await t.closeAll();
});

Deno.test("the access token is refreshed on the open socket before it expires", async () => {
  const clock = new ManualClock();
  const server = new FakeGateway(clock);
  server.createDocument(DOC, { text: "" });
  const tokens = server.issuer("alice", 60_000);
  const alice = new AetherFlowClient({
    url: "ws://fake/ws",
    auth: tokens,
    socket: server.socketFactory,
    clock,
    random: () => 0.5,
    idleTimeoutMs: 1_000_000,
  });
  alice.connect();
  await server.run();
  assert.equal(alice.status, "online");
  assert.deepEqual(tokens.issued, ["alice.1"]);
  clock.advance(39_000); // refresh at 60 s - min(60 s, 60 s / 3) = 40 s
  await server.run();
  assert.deepEqual(tokens.issued, ["alice.1"]);
  clock.advance(1_000);
  await server.run();
  assert.deepEqual(tokens.issued, ["alice.1", "alice.2"]);
  const refresh = server.received.filter((m) => m.type === "refresh");
  assert.equal(refresh.length, 1);
  assert.equal(refresh[0]!.token, "alice.2");
  assert.equal(server.live.length, 1, "same socket");
  // The next refresh is scheduled from the new expiry.
  clock.advance(40_000);
  await server.run();
  assert.equal(tokens.issued.length, 3);
  const closing = alice.close();
  await server.run();
  await closing;
});

Deno.test("a close for an expired token reconnects with a fresh token; a revoked session stops", async () => {
  const t = setup();
  const alice = t.client("alice");
  await t.open(alice);
  t.server.closeWith(t.server.live[0]!, 4003, "Token expired");
  await settle();
  t.clock.advance(10_000);
  await t.server.run();
  assert.equal(alice.status, "online");
  const auths = t.server.received.filter((m) => m.type === "auth").map((m) => m.token);
  assert.deepEqual(auths, ["alice.1", "alice.2"]);
  t.server.closeWith(t.server.live[0]!, 4004, "Session logged out");
  await settle();
  assert.equal(alice.status, "closed");
  t.clock.advance(60_000);
  await t.server.run();
  assert.equal(t.server.live.length, 0, "no reconnect after a revoked session");
  await t.closeAll();
});

Deno.test("going offline drops the socket and queues edits; coming online sends them", async () => {
  const t = setup("ab");
  const online = new FakeOnline();
  const alice = t.client("alice", { online });
  const bob = t.client("bob");
  const a = await t.open(alice);
  const b = await t.open(bob);
  online.set(false);
  await settle();
  assert.equal(alice.status, "offline");
  a.submit(ins(1, "1"));
  a.submit(ins(2, "2"));
  b.submit(ins(2, "X"));
  await t.server.run();
  assert.equal(alice.queued, 1, "typing run merged into one queued component");
  assert.equal(textOf(a), "a12b");
  t.clock.advance(60_000);
  await t.server.run();
  assert.equal(alice.status, "offline", "no attempts while the platform is offline");
  online.set(true);
  await t.server.run();
  assert.equal(alice.status, "online");
  assert.equal(textOf(a), "a12bX");
  assert.equal(textOf(b), "a12bX");
  assert.equal(alice.queued, 0);
  await t.closeAll();
});

Deno.test("a rejected op reloads the document from the server and reports the dropped edits", async () => {
  const t = setup("abc");
  const a = await t.open(t.client("alice"));
  t.server.rejectOps = "PERMISSION_DENIED";
  const rejected = a.events.next("rejected");
  a.submit(ins(0, "x"));
  assert.equal(textOf(a), "xabc");
  await t.server.run();
  const event = await rejected;
  assert.equal((event.error as { status?: string }).status, "PERMISSION_DENIED");
  assert.deepEqual(event.dropped, ins(0, "x"));
  assert.equal(textOf(a), "abc");
  assert.equal(a.queued, 0);
  t.server.rejectOps = undefined;
  a.submit(ins(3, "d"));
  await t.server.run();
  assert.deepEqual(t.server.content(DOC), { text: "abcd" });
  await t.closeAll();
});

Deno.test("a transiently failed op is retried after a backoff with the same client op id", async () => {
  const t = setup("");
  const a = await t.open(t.client("alice"));
  t.server.rejectOps = "UNAVAILABLE";
  a.submit(ins(0, "x"));
  await t.server.run();
  assert.equal(a.queued, 1);
  t.server.rejectOps = undefined;
  t.clock.advance(10_000);
  await t.server.run();
  const ids = t.server.received.filter((m) => m.type === "op").map((m) => m.client_op_id);
  assert.equal(ids.length, 2);
  assert.equal(ids[0], ids[1]);
  assert.deepEqual(t.server.content(DOC), { text: "x" });
  assert.equal(a.queued, 0);
  await t.closeAll();
});

Deno.test("presence of other sessions is observed, own presence is not, and it is re-sent after a reconnect", async () => {
  const t = setup();
  const alice = t.client("alice");
  const a = await t.open(alice);
  const b = await t.open(t.client("bob"));
  a.setPresence({ cursor: 3 });
  a.setPresence({ cursor: 4 }); // coalesced: only the latest needs to arrive
  await t.server.run();
  assert.deepEqual(b.presence.get("s-alice")?.state, { cursor: 4 });
  assert.equal(a.presence.has("s-alice"), false);
  const sent = t.server.received.filter((m) => m.type === "presence").length;
  assert.ok(sent <= 2);
  t.server.drop(t.server.live[0]!);
  await settle();
  t.clock.advance(10_000);
  await t.server.run();
  const after = t.server.received.filter((m) => m.type === "presence");
  assert.deepEqual(after.at(-1)!.state, { cursor: 4 }, "presence restored after reconnect");
  a.setPresence(null);
  await t.server.run();
  assert.equal(b.presence.has("s-alice"), false);
  await t.closeAll();
});

Deno.test("locks: acquire and release are seen by other clients", async () => {
  const t = setup();
  const a = await t.open(t.client("alice"));
  const b = await t.open(t.client("bob"));
  const acquiring = a.lock({ ttlMs: 60_000 });
  await t.server.run();
  const lock = await acquiring;
  assert.equal(b.locks.get(lock.id)?.owner_id, "alice");
  const refused = b.lock();
  await t.server.run();
  await assert.rejects(
    refused,
    (e: Error & { status?: string }) => e.status === "FAILED_PRECONDITION",
  );
  const releasing = a.unlock(lock.id);
  await t.server.run();
  await releasing;
  assert.equal(b.locks.size, 0);
  await t.closeAll();
});

Deno.test("randomised delivery orders and dropped connections: every client converges with the server", async () => {
  for (let seed = 1; seed <= 30; seed++) {
    const random = seeded(seed);
    const t = setup("0123456789");
    const names = ["alice", "bob", "carol"];
    const clients = names.map((name) => t.client(name, { random }));
    const docs = await Promise.all(clients.map((c) => t.open(c)));
    for (let round = 0; round < 40; round++) {
      const r = random();
      const who = Math.floor(random() * docs.length);
      const doc = docs[who]!;
      if (r < 0.55) {
        const text = textOf(doc);
        const at = Math.floor(random() * (text.length + 1));
        doc.submit(ins(at, String.fromCharCode(97 + Math.floor(random() * 26))));
      } else if (r < 0.8) {
        const text = textOf(doc);
        if (text.length > 0) {
          const at = Math.floor(random() * text.length);
          doc.submit(del(at, 1 + Math.floor(random() * Math.min(3, text.length - at))));
        }
      } else if (r < 0.88) {
        const conn = t.server.live[Math.floor(random() * t.server.live.length)];
        if (conn !== undefined) t.server.drop(conn);
      } else {
        t.clock.advance(Math.floor(random() * 3_000));
      }
      // Deliver a random number of random steps (acks and events interleave freely).
      const steps = Math.floor(random() * 6);
      for (let s = 0; s < steps; s++) {
        await settle();
        const available = t.server.steps();
        if (available.length === 0) break;
        available[Math.floor(random() * available.length)]!();
      }
    }
    // Heal: let timers fire and everything drain.
    for (
      let k = 0;
      k < 20 && (t.server.live.length < 3 || clients.some((c) => c.queued > 0));
      k++
    ) {
      t.clock.advance(10_000);
      await t.server.run((n) => Math.floor(random() * n));
    }
    const expected = (t.server.content(DOC) as { text: string }).text;
    for (const [i, doc] of docs.entries()) {
      assert.equal(textOf(doc), expected, `seed ${seed}: ${names[i]} converged`);
      assert.equal(doc.version, t.server.version(DOC), `seed ${seed}: ${names[i]} version`);
      assert.equal(doc.queued, 0, `seed ${seed}: ${names[i]} has nothing queued`);
    }
    await t.closeAll();
  }
});

Deno.test("randomised json ops (text, counters, list inserts/deletes/moves, sets) converge with the server", async () => {
  type Content = { text: string; n: number; items: number[]; title: string };
  let applied = 0;
  let drops = 0;
  for (let seed = 101; seed <= 130; seed++) {
    const random = seeded(seed);
    const pick = (n: number) => Math.floor(random() * n);
    const t = setup("", { text: "abc", n: 0, items: [1, 2, 3], title: "t" });
    const clients = ["alice", "bob", "carol"].map((name) => t.client(name, { random }));
    const docs = await Promise.all(clients.map((c) => t.open(c)));
    for (let round = 0; round < 40; round++) {
      const doc = docs[pick(docs.length)]!;
      const c = doc.content as Content;
      const r = random();
      let op: Op | undefined;
      if (r < 0.2) op = ins(pick(c.text.length + 1), "xyz"[pick(3)]!);
      else if (r < 0.3 && c.text.length > 0) op = del(pick(c.text.length), 1);
      else if (r < 0.45) op = [{ path: ["n"], action: { type: "increment", delta: 1 + pick(5) } }];
      else if (r < 0.6) {
        op = [{
          path: ["items"],
          action: { type: "list_insert", index: pick(c.items.length + 1), value: round },
        }];
      } else if (r < 0.7 && c.items.length > 0) {
        op = [{ path: ["items"], action: { type: "list_delete", index: pick(c.items.length) } }];
      } else if (r < 0.78 && c.items.length > 1) {
        op = [{
          path: ["items"],
          action: { type: "list_move", from: pick(c.items.length), to: pick(c.items.length) },
        }];
      } else if (r < 0.86) {
        op = [{ path: ["title"], action: { type: "set", value: `v${seed}.${round}` } }];
      } else if (r < 0.92) {
        const conn = t.server.live[pick(t.server.live.length)];
        if (conn !== undefined) {
          t.server.drop(conn);
          drops++;
        }
      } else {
        t.clock.advance(pick(3_000));
      }
      if (op !== undefined) doc.submit(op);
      for (let s = pick(6); s > 0; s--) {
        await settle();
        const available = t.server.steps();
        if (available.length === 0) break;
        available[pick(available.length)]!();
      }
    }
    for (
      let k = 0;
      k < 20 && (t.server.live.length < 3 || clients.some((c) => c.queued > 0));
      k++
    ) {
      t.clock.advance(10_000);
      await t.server.run((n) => pick(n));
    }
    for (const doc of docs) {
      assert.deepEqual(doc.content, t.server.content(DOC), `seed ${seed}`);
      assert.equal(doc.version, t.server.version(DOC), `seed ${seed}`);
      assert.equal(doc.queued, 0, `seed ${seed}`);
    }
    applied += t.server.applied;
    await t.closeAll();
  }
  assert.ok(applied > 400 && drops > 50, `exercised: ${applied} ops applied, ${drops} drops`);
});

/** Deliver the head of one lane of one connection, then let callbacks run. */
async function deliver(
  server: FakeGateway,
  conn: FakeConn,
  lane: "inbox" | "events" | "replies",
): Promise<void> {
  await settle();
  assert.ok(conn[lane].length > 0, `nothing in ${lane}`);
  server.deliver(conn, lane);
  await settle();
}
