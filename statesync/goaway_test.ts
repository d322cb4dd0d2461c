import assert from "node:assert/strict";
import { credentials, type ServiceError } from "@grpc/grpc-js";
import * as pb from "../proto/gen/statesync.ts";
import { freePort } from "../kernel/testing.ts";
import { startMain } from "./_test_child.ts";

function rpc<T>(start: (cb: (error: ServiceError | null, response: T) => void) => unknown) {
  return new Promise<T>((resolve, reject) => {
    start((error, response) => (error ? reject(error) : resolve(response)));
  });
}

Deno.test("the server survives a client that closes gracefully after 300 calls (Deno http2 GOAWAY abort)", async () => {
  // Server in its own process: without the guard, its nghttp2 aborts on the client's GOAWAY.
  const port = freePort();
  const main = startMain({
    AETHERFLOW_STATESYNC_PORT: String(port),
    AETHERFLOW_STATESYNC_STORAGE: "memory",
  });
  const { child, log } = main;
  const address = `127.0.0.1:${port}`;
  try {
    assert.match(await log.wait("Statesync service listening"), /listening/);
    const first = new pb.StateSyncServiceClient(address, credentials.createInsecure());
    for (let i = 0; i < 300; i++) await rpc((cb) => first.getStats({}, cb));
    first.close(); // sends GOAWAY
    const second = new pb.StateSyncServiceClient(address, credentials.createInsecure());
    try {
      const stats = await rpc<pb.Stats>((cb) => second.getStats({}, cb));
      assert.equal(stats.documents, 0);
    } finally {
      second.close();
    }
    child.kill("SIGTERM");
    const exit = await child.status;
    assert.equal(exit.code, 0, `exit ${exit.code}; log:\n${log.lines.join("\n")}`);
  } finally {
    await main.stop("SIGKILL");
  }
});
