import assert from "node:assert/strict";
import { AppError, newId } from "../kernel/mod.ts";
import { createGateway } from "./app.ts";
import { serveGateway } from "./serve.ts";
import { WsTestClient } from "./testing.ts";
import { CloseCode, WsHub, type WsSocket } from "./ws_hub.ts";
import { fakeBackends, sessionToken, testConfig, testUsers } from "./_testing.ts";

async function setup(overrides: Record<string, unknown> = {}) {
  const backends = fakeBackends();
  const config = testConfig(overrides);
  const gateway = await createGateway({ config, backends, users: await testUsers() });
  const server = serveGateway(gateway, { port: 0 });
  const url = `ws://127.0.0.1:${server.port}/ws`;
  const token = (name = "alice", now = Date.now()) =>
    sessionToken(backends.session, gateway.tokens, name, now);
  const client = async (name = "alice", autoPong = true) => {
    const c = await WsTestClient.connect(url, autoPong);
    const reply = await c.request({ type: "auth", token: await token(name) });
    assert.equal(reply.type, "reply", JSON.stringify(reply));
    return c;
  };
  const createDoc = async () =>
    (await backends.statesync.createDocument({
      actorId: "id-alice",
      name: "d",
      type: 1,
      contentJson: "",
      permissions: undefined,
      metadata: {},
      conflictStrategy: 0,
    })).id;
  return {
    backends,
    gateway,
    server,
    url,
    token,
    client,
    createDoc,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

const textInsert = (offset: number, text: string) => [
  { type: "text_insert", path: ["text"], offset, text },
];

Deno.test("ws: the first message must be auth; a bad token closes with 4001", async () => {
  await using env = await setup();
  const early = await WsTestClient.connect(env.url);
  early.send({ type: "subscribe", channel: "x" });
  assert.equal((await early.closed).code, CloseCode.AUTH_FAILED);
  const bad = await WsTestClient.connect(env.url);
  bad.send({ type: "auth", token: "not.a.jwt" });
  assert.equal((await bad.closed).code, CloseCode.AUTH_FAILED);
});

Deno.test("ws: auth replies echo the id; ping gets a pong with the same id", async () => {
  await using env = await setup();
  await using c = await WsTestClient.connect(env.url);
  const reply = await c.request({ type: "auth", id: "a-1", token: await env.token() });
  assert.equal(reply.id, "a-1");
  assert.equal(reply.data.username, "alice");
  const pong = await c.request({ type: "ping", id: 42 });
  assert.deepEqual(pong, { type: "pong", id: 42 });
  const again = await c.request({ type: "auth", token: await env.token() });
  assert.equal(again.type, "error");
  assert.equal(again.status, "FAILED_PRECONDITION");
});

Deno.test("ws: invalid messages get an error naming the field, the socket stays open", async () => {
  await using env = await setup();
  await using c = await env.client();
  const unknown = await c.request({ type: "subscribe", channel: "ok", colour: "red" });
  assert.equal(unknown.type, "error");
  assert.match(unknown.message, /colour/);
  const wrong = await c.request({
    type: "op",
    document_id: newId(),
    base_version: "x",
    components: [],
  });
  assert.match(wrong.message, /base_version/);
  c.sendRaw("{nope");
  const malformed = await c.next((m) => m.type === "error");
  assert.match(malformed.message, /Malformed JSON/);
  assert.equal((await c.request({ type: "ping" })).type, "pong");
});

Deno.test("ws: ops are acked after the statesync result and fanned out to every subscriber", async () => {
  await using env = await setup();
  const doc = await env.createDoc();
  await using a = await env.client("alice");
  await using b = await env.client("bob");
  const subA = await a.request({ type: "subscribe", document_id: doc });
  const subB = await b.request({ type: "subscribe", document_id: doc });
  assert.equal(subA.data.version, 0);
  assert.deepEqual(subB.data.document.content, { text: "" });
  assert.equal(env.backends.control.subscriptions, 1, "one statesync stream per document");

  const ack = await a.request({
    type: "op",
    document_id: doc,
    base_version: 0,
    client_op_id: "a1",
    components: textInsert(0, "hi"),
  });
  assert.equal(ack.type, "ack");
  assert.equal(ack.version, 1);
  for (const c of [a, b]) {
    const event = await c.next((m) => m.type === "event" && m.event === "operation_applied");
    assert.equal(event.version, 1);
    assert.equal(event.operation.components[0].text, "hi");
  }
  const ack2 = await b.request({
    type: "op",
    document_id: doc,
    base_version: 1,
    components: textInsert(2, "!"),
  });
  assert.equal(ack2.version, 2);
  assert.equal(env.backends.control.submitStreams, 1, "one submit stream for all sockets");
  const bad = await a.request({
    type: "op",
    document_id: doc,
    base_version: 99,
    components: textInsert(0, "x"),
  });
  assert.equal(bad.type, "error");
  assert.equal(bad.status, "FAILED_PRECONDITION");
  const stats = env.gateway.hub.stats();
  assert.equal(stats.connections, 2);
  assert.equal(stats.opsAcked, 2);
});

Deno.test("ws: subscribe with from_version replays exactly the missed ops, then live", async () => {
  await using env = await setup();
  const doc = await env.createDoc();
  await using a = await env.client("alice");
  await a.request({ type: "subscribe", document_id: doc });
  for (let v = 0; v < 3; v++) {
    await a.request({
      type: "op",
      document_id: doc,
      base_version: v,
      components: textInsert(v, "x"),
    });
  }
  await using b = await env.client("bob");
  const sub = await b.request({ type: "subscribe", document_id: doc, from_version: 1 });
  assert.equal(sub.data.replayed, 2);
  assert.equal(sub.data.version, 3);
  const replayed = b.pending.filter((m) => m.type === "event");
  assert.deepEqual(replayed.map((m) => m.version), [2, 3]);
  await a.request({
    type: "op",
    document_id: doc,
    base_version: 3,
    components: textInsert(0, "y"),
  });
  const live = await b.next((m) => m.type === "event" && m.version === 4);
  assert.equal(live.event, "operation_applied");
  const ahead = await b.request({ type: "subscribe", document_id: doc, from_version: 99 });
  assert.equal(ahead.type, "error");
  assert.equal(ahead.status, "OUT_OF_RANGE");
});

Deno.test("ws: unsubscribing the last local subscriber closes the statesync stream", async () => {
  await using env = await setup();
  const doc = await env.createDoc();
  await using a = await env.client();
  await a.request({ type: "subscribe", document_id: doc });
  assert.equal(env.backends.control.subscriptions, 1);
  await a.request({ type: "unsubscribe", document_id: doc });
  assert.equal(env.backends.control.subscriptions, 0);
  const missing = await a.request({ type: "subscribe", document_id: newId() });
  assert.equal(missing.status, "NOT_FOUND");
});

Deno.test("ws: channels: publish reaches every subscriber, notify all but the sender", async () => {
  await using env = await setup();
  await using a = await env.client("alice");
  await using b = await env.client("bob");
  await a.request({ type: "subscribe", channel: "room:1" });
  await b.request({ type: "subscribe", channel: "room:1" });
  const published = await a.request({ type: "publish", channel: "room:1", data: { n: 1 } });
  assert.equal(published.data.delivered, 2);
  for (const c of [a, b]) {
    const m = await c.next((x) => x.type === "message");
    assert.deepEqual(m, { type: "message", channel: "room:1", from: "id-alice", data: { n: 1 } });
  }
  const notified = await a.request({ type: "notify", channel: "room:1", data: "typing" });
  assert.equal(notified.data.delivered, 1);
  assert.equal((await b.next((x) => x.type === "message")).data, "typing");
  const bad = await a.request({ type: "subscribe", channel: "bad channel!" });
  assert.equal(bad.type, "error");
});

Deno.test("ws: presence updates reach subscribers; locks acquire and release", async () => {
  await using env = await setup();
  const doc = await env.createDoc();
  await using a = await env.client("alice");
  await using b = await env.client("bob");
  await b.request({ type: "subscribe", document_id: doc });
  const p = await a.request({ type: "presence", document_id: doc, state: { cursor: 3 } });
  assert.equal(p.type, "reply");
  const event = await b.next((m) => m.event === "presence_updated");
  assert.deepEqual(event.presence.state, { cursor: 3 });
  const lock = await a.request({ type: "lock", document_id: doc, path: ["text"], ttl_ms: 1000 });
  assert.deepEqual(lock.data.path, ["text"]);
  const unlock = await a.request({ type: "unlock", document_id: doc, lock_id: lock.data.id });
  assert.equal(unlock.data.released, true);
});

Deno.test("ws: a message over the size limit closes with 1009", async () => {
  await using env = await setup({ ws: { maxMessageBytes: 1024 } });
  const c = await env.client();
  c.send({ type: "publish", channel: "x", data: "y".repeat(2000) });
  assert.equal((await c.closed).code, CloseCode.MESSAGE_TOO_BIG);
});

Deno.test("ws: per-connection rate limit answers RESOURCE_EXHAUSTED", async () => {
  await using env = await setup({ ws: { messagesPerSecond: 1 } });
  await using c = await env.client(); // auth used one of the 2 burst tokens
  c.send({ type: "ping", id: "p1" });
  c.send({ type: "ping", id: "p2" });
  const limited = await c.next((m) => m.type === "error");
  assert.equal(limited.status, "RESOURCE_EXHAUSTED");
  assert.equal(env.gateway.hub.stats().rateLimited, 1);
});

Deno.test("ws: the per-user rate limit spans the user's connections; reconnecting does not refill it", async () => {
  // Per connection 100 msg/s; per user 1 msg/s (burst 2): the user's budget is the limit.
  await using env = await setup({ ws: { messagesPerSecond: 100, userMessagesPerSecond: 1 } });
  await using first = await env.client("alice");
  assert.deepEqual(await first.request({ type: "ping", id: "a1" }), { type: "pong", id: "a1" });
  assert.deepEqual(await first.request({ type: "ping", id: "a2" }), { type: "pong", id: "a2" });
  // Answered by either a pong or the rate-limit error (which carries no id).
  const answer = (m: { type?: unknown }) => m.type === "pong" || m.type === "error";
  first.send({ type: "ping", id: "a3" });
  assert.equal((await first.next(answer)).status, "RESOURCE_EXHAUSTED");
  // A new socket of the same user starts with the user's empty bucket, not a full one.
  await using second = await env.client("alice");
  second.send({ type: "ping", id: "b1" });
  assert.equal((await second.next(answer)).status, "RESOURCE_EXHAUSTED");
  // Another user has a budget of their own.
  await using other = await env.client("bob");
  assert.deepEqual(await other.request({ type: "ping", id: "c1" }), { type: "pong", id: "c1" });
  assert.equal(env.gateway.hub.stats().rateLimited, 2);
});

Deno.test("ws: an expired token closes with 4003 unless refreshed; refresh must be the same user", async () => {
  await using env = await setup({ auth: { accessTtlSeconds: 60, clockToleranceSeconds: 0 } });
  const c = await WsTestClient.connect(env.url);
  const soon = await env.token("alice", Date.now() - 58_500); // expires in 0.5-1.5 s
  await c.request({ type: "auth", token: soon });
  const other = await c.request({ type: "refresh", token: await env.token("bob") });
  assert.equal(other.status, "PERMISSION_DENIED");
  assert.equal((await c.closed).code, CloseCode.TOKEN_EXPIRED);

  await using d = await WsTestClient.connect(env.url);
  await d.request({ type: "auth", token: await env.token("alice", Date.now() - 58_500) });
  const refreshed = await d.request({ type: "refresh", token: await env.token("alice") });
  assert.equal(refreshed.type, "reply");
  assert.ok(refreshed.data.expires_at > Date.now() + 50_000);
});

Deno.test("ws: a client that never answers pings is closed with 4010", async () => {
  await using env = await setup({ ws: { pingIntervalMs: 30, pongTimeoutMs: 60 } });
  const c = await env.client("alice", false);
  const ping = await c.next((m) => m.type === "ping");
  assert.deepEqual(ping, { type: "ping" });
  assert.equal((await c.closed).code, CloseCode.PONG_TIMEOUT);
});

Deno.test("ws: a client answering pings stays open", async () => {
  // Ten pings span twice the pong timeout: the socket stays open only if pongs count.
  await using env = await setup({ ws: { pingIntervalMs: 100, pongTimeoutMs: 500 } });
  await using c = await env.client("alice", false);
  for (let i = 0; i < 10; i++) {
    await c.next((m) => m.type === "ping");
    c.send({ type: "pong" });
  }
  assert.equal(c.socket.readyState, WebSocket.OPEN);
});

Deno.test("ws: no auth within the timeout closes with 4002", async () => {
  await using env = await setup({ ws: { authTimeoutMs: 30 } });
  const c = await WsTestClient.connect(env.url);
  assert.equal((await c.closed).code, CloseCode.AUTH_TIMEOUT);
});

Deno.test("ws: logout closes the session's sockets with 4004", async () => {
  await using env = await setup();
  const login = await env.gateway.handler(
    new Request("http://gw/api/v1/auth/login", {
      method: "POST",
      body: JSON.stringify({ username: "alice", password: "password-123" }),
    }),
  );
  const { data } = await login.json();
  const c = await WsTestClient.connect(env.url);
  await c.request({ type: "auth", token: data.access_token });
  await env.gateway.handler(
    new Request("http://gw/api/v1/auth/logout", {
      method: "POST",
      headers: { authorization: `Bearer ${data.access_token}` },
    }),
  );
  assert.equal((await c.closed).code, CloseCode.SESSION_REVOKED);
  const again = await WsTestClient.connect(env.url);
  again.send({ type: "auth", token: data.access_token });
  assert.equal((await again.closed).code, CloseCode.AUTH_FAILED);
});

/** A socket whose peer never reads: the queue only grows. */
class StuckSocket implements WsSocket {
  readyState = 1;
  bufferedAmount = 0;
  closedWith: number | undefined;
  onopen: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  onclose: ((event: CloseEvent) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;
  sent: string[] = [];
  #waiters: Array<{ match: (m: string) => boolean; resolve: () => void }> = [];
  send(data: string): void {
    this.bufferedAmount += data.length;
    this.sent.push(data);
    this.#waiters = this.#waiters.filter((w) => !(w.match(data) && (w.resolve(), true)));
  }
  /** Resolves when a message containing `text` has been sent (now or later). */
  sentMatching(text: string): Promise<void> {
    if (this.sent.some((m) => m.includes(text))) return Promise.resolve();
    return new Promise((resolve) =>
      this.#waiters.push({ match: (m) => m.includes(text), resolve })
    );
  }
  close(code?: number): void {
    this.closedWith = code;
    this.readyState = 3;
  }
  receive(message: unknown): void {
    this.onmessage?.(new MessageEvent("message", { data: JSON.stringify(message) }));
  }
}

Deno.test("ws: a slow consumer is closed with 4009 once its queue passes the limit", async () => {
  const backends = fakeBackends();
  const config = testConfig({ ws: { maxQueuedBytes: 4096 } });
  const gateway = await createGateway({ config, backends, users: await testUsers() });
  const hub: WsHub = gateway.hub;
  const stuck = new StuckSocket();
  const fast = new StuckSocket();
  hub.accept(stuck, { ip: "1.1.1.1" });
  hub.accept(fast, { ip: "1.1.1.2" });
  const token = await sessionToken(backends.session, gateway.tokens, "u");
  for (const s of [stuck, fast]) {
    s.receive({ type: "auth", id: "auth-1", token });
    await s.sentMatching('"id":"auth-1"');
    s.receive({ type: "subscribe", id: "sub-1", channel: "c" });
    await s.sentMatching('"id":"sub-1"');
  }
  for (let i = 0; i < 100 && stuck.closedWith === undefined; i++) {
    fast.bufferedAmount = 0; // this peer drains
    fast.receive({ type: "publish", channel: "c", data: "x".repeat(200) });
    await Promise.resolve();
  }
  assert.equal(stuck.closedWith, CloseCode.SLOW_CONSUMER);
  assert.ok(stuck.bufferedAmount <= 4096, "queue stayed bounded");
  assert.equal(fast.closedWith, undefined);
  assert.equal(hub.stats().slowConsumersClosed, 1);
  await gateway.close();
});

Deno.test("ws: a token whose session was terminated is refused at auth", async () => {
  await using env = await setup();
  const token = await env.token("alice");
  const sid = JSON.parse(atob(token.split(".")[1]!.replaceAll("-", "+").replaceAll("_", "/"))).sid;
  await env.backends.session.deleteSession({ sessionId: sid });
  const c = await WsTestClient.connect(env.url);
  c.send({ type: "auth", token });
  const closed = await c.closed;
  assert.equal(closed.code, CloseCode.AUTH_FAILED);
  assert.match(closed.reason, /Session/);
});

Deno.test("ws: a dropped statesync subscription reconnects from the oldest member version, losing nothing", async () => {
  await using env = await setup();
  const doc = await env.createDoc();
  await using a = await env.client("alice");
  await a.request({ type: "subscribe", document_id: doc });
  const apply = (base: number, text: string) =>
    env.backends.statesync.applyOperation({
      actorId: "id-alice",
      operation: {
        id: "",
        documentId: doc,
        baseVersion: base,
        version: 0,
        authorId: "id-alice",
        sessionId: "s",
        clientOpId: text,
        timestamp: 0,
        components: [{
          path: [{ element: { $case: "key", value: "text" } }],
          action: { $case: "textInsert", value: { offset: 0, text } },
        }],
      },
    });
  await apply(0, "a");
  await a.next((m) => m.event === "operation_applied" && m.version === 1);

  // Statesync restarts: the stream drops and the first reconnect attempt fails too.
  env.backends.control.statesyncDown = true;
  const retried = env.backends.control.nextSubscribeCall();
  env.backends.control.failSubscriptions(new AppError("UNAVAILABLE", "restarting"));
  await retried; // this attempt fails: statesync is still down
  const resubscribed = env.backends.control.nextSubscribed();
  env.backends.control.statesyncDown = false;
  await apply(1, "b"); // applied while no stream is open
  const { fromVersion } = await resubscribed;
  assert.equal(fromVersion, 1, "resumed from the member's last version");
  assert.equal(env.backends.control.calls.get("subscribeDocument"), 3, "first, failed, live");
  const missed = await a.next((m) => m.event === "operation_applied" && m.version === 2);
  assert.equal(missed.operation.components[0].text, "b");
  await apply(2, "c");
  const live = await a.next((m) => m.event === "operation_applied" && m.version === 3);
  assert.equal(live.operation.components[0].text, "c");
  assert.equal(
    a.pending.filter((m) => m.event === "operation_applied").length,
    0,
    "no duplicates",
  );
});

Deno.test("ws: a deleted document ends its subscriptions with subscription_ended", async () => {
  await using env = await setup();
  const doc = await env.createDoc();
  await using a = await env.client("alice");
  await a.request({ type: "subscribe", document_id: doc });
  env.backends.control.failSubscriptions(new AppError("NOT_FOUND", "Document deleted"));
  const ended = await a.next((m) => m.event === "subscription_ended");
  assert.equal(ended.status, "NOT_FOUND");
  assert.equal(env.gateway.hub.stats().documents, 0);
});

Deno.test("ws: messages sent right after auth (without waiting) are handled in order", async () => {
  await using env = await setup();
  await using c = await WsTestClient.connect(env.url);
  const token = await env.token();
  c.send({ type: "auth", id: "a", token });
  c.send({ type: "subscribe", id: "s", channel: "fast" });
  c.send({ type: "ping", id: "p" });
  assert.equal((await c.next((m) => m.id === "a")).type, "reply");
  assert.equal((await c.next((m) => m.id === "s")).data.channel, "fast");
  assert.equal((await c.next((m) => m.id === "p")).type, "pong");
});

Deno.test("ws: shutdown waits for ops already sent to statesync, acks them, then closes 1001", async () => {
  const env = await setup();
  const doc = await env.createDoc();
  const original = env.backends.statesync.submitOperations.bind(env.backends.statesync);
  let release!: () => void;
  const held = new Promise<void>((resolve) => release = resolve);
  let received!: () => void;
  const arrived = new Promise<void>((resolve) => received = resolve);
  env.backends.statesync.submitOperations = (handlers) =>
    original({
      ...handlers,
      onData: (result) => {
        received();
        held.then(() => handlers.onData(result));
      },
    });
  const c = await env.client();
  c.send({
    type: "op",
    id: "op-1",
    document_id: doc,
    base_version: 0,
    components: textInsert(0, "x"),
  });
  await arrived;
  const stopping = env.server.shutdown();
  release();
  const ack = await c.next((m) => m.id === "op-1");
  assert.equal(ack.type, "ack");
  assert.equal(ack.version, 1);
  assert.equal((await c.closed).code, CloseCode.GOING_AWAY);
  await stopping;
});

Deno.test("ws: open sockets heartbeat their session and report traffic counters", async () => {
  await using env = await setup({ ws: { sessionSyncMs: 20 } });
  const beating = env.backends.control.nextCall("heartbeat");
  const updating = env.backends.control.nextCall("updateSession");
  await using c = await env.client();
  await c.request({ type: "ping" });
  await c.request({ type: "subscribe", channel: "x" });
  const beat = await beating as { sessionId: string };
  let update = await updating as {
    sessionId: string;
    updateMask: string[];
    stats: { messagesIn: number; messagesOut: number; bytesIn: number };
  };
  // The first report may precede the two requests; wait for one that includes them.
  while (update.stats.messagesIn < 3) {
    c.send({ type: "ping" }); // new traffic makes the session due for a report
    update = await env.backends.control.nextCall("updateSession") as typeof update;
  }
  assert.equal(update.sessionId, beat.sessionId);
  assert.deepEqual(update.updateMask, ["stats"]);
  assert.ok(update.stats.messagesIn >= 3, JSON.stringify(update.stats)); // ping, subscribe, ...
  assert.ok(update.stats.messagesOut >= 2);
  assert.ok(update.stats.bytesIn > 0);
});

Deno.test("ws: subscriptions per connection are capped", async () => {
  await using env = await setup({ ws: { maxSubscriptions: 2 } });
  await using c = await env.client();
  assert.equal((await c.request({ type: "subscribe", channel: "a" })).type, "reply");
  const doc = await env.createDoc();
  assert.equal((await c.request({ type: "subscribe", document_id: doc })).type, "reply");
  const third = await c.request({ type: "subscribe", channel: "b" });
  assert.equal(third.status, "RESOURCE_EXHAUSTED");
  assert.equal(
    (await c.request({ type: "subscribe", channel: "a" })).type,
    "reply",
    "resubscribe ok",
  );
});

Deno.test("ws: operations in flight per connection are capped", async () => {
  await using env = await setup({ ws: { maxOpsInFlight: 2 } });
  const doc = await env.createDoc();
  const original = env.backends.statesync.submitOperations.bind(env.backends.statesync);
  let release!: () => void;
  const held = new Promise<void>((resolve) => release = resolve);
  env.backends.statesync.submitOperations = (handlers) =>
    original({ ...handlers, onData: (result) => void held.then(() => handlers.onData(result)) });
  await using c = await env.client();
  const op = (id: string, base: number) =>
    c.send({ type: "op", id, document_id: doc, base_version: base, components: textInsert(0, id) });
  op("o1", 0);
  op("o2", 0);
  op("o3", 0);
  const refused = await c.next((m) => m.id === "o3");
  assert.equal(refused.status, "RESOURCE_EXHAUSTED");
  release();
  assert.equal((await c.next((m) => m.id === "o1")).type, "ack");
  assert.equal((await c.next((m) => m.id === "o2")).type, "ack");
});

Deno.test("ws: a client that keeps flooding past the rate limit is closed with 4008", async () => {
  // Burst 1 (taken by auth), refill negligible: every ping is over the limit; the 50th
  // violation in a row closes the socket (nothing is sent after it, so the close is clean).
  await using env = await setup({ ws: { messagesPerSecond: 0.01 } });
  const c = await env.client();
  for (let i = 0; i < 50; i++) c.send({ type: "ping" });
  assert.equal((await c.closed).code, CloseCode.RATE_LIMITED);
});

Deno.test("ws: an upgrade from a browser origin passes the CORS and request-id middleware", async () => {
  await using env = await setup({ corsOrigins: ["http://app.example"] });
  const ws = new WebSocket(env.url, { headers: { origin: "http://app.example" } } as never);
  const opened = await new Promise<boolean>((resolve) => {
    ws.onopen = () => resolve(true);
    ws.onerror = () => resolve(false);
  });
  const closed = new Promise((resolve) => ws.onclose = resolve);
  ws.close();
  await closed;
  assert.ok(opened);
});
