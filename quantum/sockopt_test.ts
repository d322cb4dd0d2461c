import assert from "node:assert/strict";
import { setReceiveBuffer } from "./_sockopt.ts";
import { dial, listen } from "./endpoint.ts";
import { listenUdp } from "./packet_conn.ts";

Deno.test("setReceiveBuffer raises SO_RCVBUF of a UDP socket found by its port", () => {
  const conn = listenUdp({ hostname: "127.0.0.1", port: 0 });
  try {
    const before = setReceiveBuffer(conn.addr.port, 64 * 1024);
    const after = setReceiveBuffer(conn.addr.port, 1 << 20);
    assert.ok(after > before, `${before} -> ${after}`);
    assert.ok(after >= 1 << 20, `the kernel reports ${after}`);
  } finally {
    conn.close();
  }
  assert.throws(() => setReceiveBuffer(conn.addr.port, 100), RangeError);
});

Deno.test("listen and dial with receiveBufferBytes exchange data", async () => {
  const listener = listen({ hostname: "127.0.0.1", port: 0, receiveBufferBytes: 1 << 20 });
  const accepted = listener.accept();
  const conn = await dial({
    hostname: "127.0.0.1",
    port: listener.addr.port,
    receiveBufferBytes: 1 << 20,
  });
  const server = (await accepted)!;
  const writer = conn.writable.getWriter();
  await writer.write(new Uint8Array([1, 2, 3]));
  await writer.close();
  const reader = server.readable.getReader();
  assert.deepEqual((await reader.read()).value, new Uint8Array([1, 2, 3]));
  reader.releaseLock();
  await Promise.all([conn.close(), server.close()]);
  await listener.close();
});
