import assert from "node:assert/strict";
import { messageChannel } from "./messages.ts";
import { simHarness } from "./_test_util.ts";

Deno.test("10k messages arrive in order, none lost or duplicated, at 10% loss", async () => {
  await using harness = simHarness({
    loss: 0.1,
    delayMs: 5,
    jitterMs: 2,
    duplicate: 0.02,
    seed: 10,
  });
  const listener = harness.listen();
  const count = 10_000;
  const server = (async () => {
    const conn = (await listener.accept())!;
    const messages = messageChannel(conn);
    const seen: number[] = [];
    for await (const message of messages) {
      const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
      const index = view.getUint32(0);
      assert.equal(message.length, 8 + (index % 97));
      assert.equal(view.getUint32(4), index ^ 0x5a5a5a5a);
      seen.push(index);
    }
    await messages.close();
    await conn.close();
    return seen;
  })();
  const conn = await harness.dial(listener);
  const messages = messageChannel(conn);
  for (let i = 0; i < count; i++) {
    const message = new Uint8Array(8 + (i % 97));
    const view = new DataView(message.buffer);
    view.setUint32(0, i);
    view.setUint32(4, i ^ 0x5a5a5a5a);
    await messages.send(message);
  }
  await messages.close();
  assert.equal(await messages.receive(), null);
  await conn.close();
  const seen = await server;
  assert.equal(seen.length, count);
  for (let i = 0; i < count; i++) assert.equal(seen[i], i);
  assert.ok(conn.stats().retransmits > 0);
});

function pipePair() {
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  return { readable, writable };
}

Deno.test("messageChannel() frames messages across arbitrary chunk boundaries", async () => {
  const { readable, writable } = pipePair();
  const writer = writable.getWriter();
  const reader = messageChannel({ readable, writable: new WritableStream() });
  // Two messages (3 and 0 bytes) and a 1-byte one, split at awkward places.
  const bytes = Uint8Array.of(0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 1, 9);
  const done = (async () => {
    for (const cut of [[0, 2], [2, 5], [5, 11], [11, 16]]) {
      await writer.write(bytes.slice(cut[0], cut[1]));
    }
    await writer.close();
  })();
  assert.deepEqual(await reader.receive(), Uint8Array.of(1, 2, 3));
  assert.deepEqual(await reader.receive(), new Uint8Array(0));
  assert.deepEqual(await reader.receive(), Uint8Array.of(9));
  assert.equal(await reader.receive(), null);
  await done;
});

Deno.test("messageChannel() rejects oversized and truncated frames with SyntaxError", async () => {
  const oversized = pipePair();
  const w1 = oversized.writable.getWriter();
  const r1 = messageChannel({ readable: oversized.readable, writable: new WritableStream() }, {
    maxMessageSize: 10,
  });
  w1.write(Uint8Array.of(0, 0, 0, 11));
  await assert.rejects(r1.receive(), SyntaxError);

  const truncated = pipePair();
  const w2 = truncated.writable.getWriter();
  const r2 = messageChannel({ readable: truncated.readable, writable: new WritableStream() });
  w2.write(Uint8Array.of(0, 0, 0, 5, 1, 2));
  w2.close();
  await assert.rejects(r2.receive(), SyntaxError);

  const sender = messageChannel(
    { readable: new ReadableStream(), writable: new WritableStream() },
    {
      maxMessageSize: 4,
    },
  );
  await assert.rejects(sender.send(new Uint8Array(5)), RangeError);
});
