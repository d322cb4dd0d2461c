import assert from "node:assert/strict";
import { AppError } from "./errors.ts";
import { connectEtcd, etcdConfigSchema, padNumber, prefixEnd } from "./etcd.ts";
import { ETCD_BINARY, freePort, needs, startEtcd } from "./testing.ts";

const tools = needs(ETCD_BINARY);

Deno.test({
  name: "connectEtcd() reaches a real etcd and writes under the prefix" + tools.note,
  ignore: tools.ignore,
  async fn() {
    await using server = await startEtcd();
    const etcd = await connectEtcd({ endpoints: [server.endpoint], prefix: "/t/" });
    try {
      assert.equal(etcd.key("a", "b"), "/t/a/b");
      await etcd.client.put(etcd.key("a")).value("1");
      assert.equal(await etcd.client.get("/t/a").string(), "1");
    } finally {
      etcd.close();
    }
  },
});

Deno.test({
  name: "connectEtcd() authenticates with the configured user when etcd has auth on" +
    tools.note,
  ignore: tools.ignore,
  async fn() {
    await using server = await startEtcd();
    const admin = await connectEtcd({ endpoints: [server.endpoint] });
    try {
      await admin.client.user("root").create("root-password");
      await admin.client.user("root").addRole("root");
      await admin.client.auth.authEnable();
    } finally {
      admin.close();
    }
    const etcd = await connectEtcd({
      endpoints: [server.endpoint],
      auth: { username: "root", password: "root-password" },
    });
    try {
      await etcd.client.put(etcd.key("secret")).value("1");
      assert.equal(await etcd.client.get(etcd.key("secret")).string(), "1");
    } finally {
      etcd.close();
    }
    // Without credentials every request is refused: start-up fails with a clear error.
    await assert.rejects(
      connectEtcd({ endpoints: [server.endpoint], dialTimeoutMs: 1000 }),
      (error) =>
        error instanceof AppError && error.status === "UNAVAILABLE" &&
        /refused the start-up check .*user name is empty/.test(error.message),
    );
  },
});

Deno.test("connectEtcd() fails fast with UNAVAILABLE naming the endpoint when etcd is down", async () => {
  const endpoint = `http://127.0.0.1:${freePort()}`;
  await assert.rejects(connectEtcd({ endpoints: [endpoint], dialTimeoutMs: 300 }), (error) => {
    assert.ok(error instanceof AppError);
    assert.equal(error.status, "UNAVAILABLE");
    assert.match(error.message, new RegExp(`etcd at ${endpoint} is unreachable`));
    return true;
  });
});

Deno.test("etcdConfigSchema has working defaults and refuses an empty endpoint list", () => {
  const config = etcdConfigSchema.parse({});
  assert.deepEqual(config.endpoints, ["http://127.0.0.1:2379"]);
  assert.equal(config.prefix, "/aetherflow");
  assert.equal(config.tls.caFile, undefined);
  assert.throws(() => etcdConfigSchema.parse({ endpoints: [] }));
  assert.throws(() => etcdConfigSchema.parse({ tls: { ca: "x" } }));
});

Deno.test("prefixEnd() and padNumber() give sortable range bounds", () => {
  assert.equal(prefixEnd("/a/").toString(), "/a0");
  assert.deepEqual([...prefixEnd(new Uint8Array([1, 0xff]))], [2]);
  assert.equal(padNumber(42, 5), "00042");
  assert.throws(() => padNumber(-1), RangeError);
});
