import assert from "node:assert/strict";
import { connectEtcd, type EtcdConnection } from "./etcd.ts";
import { ETCD_BINARY, type EtcdServer, needs, readLines, startEtcd } from "./testing.ts";
import { registerService, type ServiceInstance, ServiceResolver } from "./discovery.ts";

const tools = needs(ETCD_BINARY);

let shared: Promise<EtcdServer> | undefined;
function server(): Promise<EtcdServer> {
  shared ??= startEtcd();
  return shared;
}

async function connect(prefix: string): Promise<EtcdConnection & Disposable> {
  const etcd = await connectEtcd({ endpoints: [(await server()).endpoint], prefix });
  return Object.assign(etcd, { [Symbol.dispose]: () => etcd.close() });
}

Deno.test({
  name: "discovery: the resolver sees registered instances and drops one that stops" + tools.note,
  ignore: tools.ignore,
  async fn() {
    const prefix = `/disc/${crypto.randomUUID()}`;
    using etcd = await connect(prefix);
    const one = await registerService(etcd, {
      service: "statesync",
      address: { tcp: "127.0.0.1:1001", quantum: "127.0.0.1:2001" },
    });
    const resolver = await ServiceResolver.open(etcd, "statesync");
    try {
      assert.deepEqual(resolver.instances(), [
        { id: one.id, tcp: "127.0.0.1:1001", quantum: "127.0.0.1:2001" },
      ]);
      // Anything with update(nodes) can be bound, e.g. the gateway's P2cBalancer.
      let nodes: { id: string; value: ServiceInstance }[] = [];
      const unbind = resolver.bind({ update: (next) => void (nodes = next) });
      const two = await registerService(etcd, {
        service: "statesync",
        address: { tcp: "127.0.0.1:1002", quantum: "" },
      });
      await resolver.waitFor((list) => list.length === 2);
      assert.equal(nodes.length, 2);
      // Another service's instances are not mixed in.
      const other = await registerService(etcd, {
        service: "session",
        address: { tcp: "127.0.0.1:9", quantum: "" },
      });
      await one.close();
      const left = await resolver.waitFor((list) => list.length === 1);
      assert.equal(left[0]!.id, two.id);
      assert.deepEqual(nodes.map((n) => n.value.tcp), ["127.0.0.1:1002"]);
      unbind();
      await two.close();
      await other.close();
    } finally {
      await resolver.close();
    }
  },
});

Deno.test({
  name: "discovery: a registration whose lease is lost registers again" + tools.note,
  ignore: tools.ignore,
  async fn() {
    const prefix = `/disc/${crypto.randomUUID()}`;
    using etcd = await connect(prefix);
    using admin = await connect(prefix);
    const registration = await registerService(etcd, {
      service: "session",
      address: { tcp: "127.0.0.1:1", quantum: "" },
      ttlSeconds: 2,
    });
    const resolver = await ServiceResolver.open(admin, "session");
    try {
      const lease = (await admin.client.get(registration.key).exec()).kvs[0]!.lease;
      const gone = resolver.waitFor((list) => list.length === 0);
      const again = registration.reregistered();
      // etcd forgets the lease (as after a long partition): the keepalive reports it lost.
      await admin.client.leaseClient.leaseRevoke({ ID: lease });
      await gone;
      await again;
      await resolver.waitFor((list) => list.length === 1);
      assert.equal(registration.registrations, 2);
      const kv = (await admin.client.get(registration.key).exec()).kvs[0]!;
      assert.notEqual(kv.lease, lease);
    } finally {
      await resolver.close();
      await registration.close();
    }
  },
});

Deno.test({
  name: "discovery: an instance killed with SIGKILL is dropped within its lease TTL" + tools.note,
  ignore: tools.ignore,
  async fn() {
    const prefix = `/disc/${crypto.randomUUID()}`;
    using etcd = await connect(prefix);
    const resolver = await ServiceResolver.open(etcd, "statesync");
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--no-check",
        new URL("./_discovery_child.ts", import.meta.url).pathname,
        (await server()).endpoint,
        prefix,
        "statesync",
        "2",
        "127.0.0.1:4242",
      ],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    try {
      for await (const line of readLines(child.stdout)) {
        if (line.startsWith("registered ")) break;
      }
      await resolver.waitFor((list) => list.length === 1);
      child.kill("SIGKILL");
      await child.status;
      const started = Date.now();
      await resolver.waitFor((list) => list.length === 0);
      const ms = Date.now() - started;
      assert.ok(ms < 4000, `dropped after ${ms} ms`);
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await child.status;
      await child.stdout.cancel().catch(() => {});
      await resolver.close();
    }
  },
});

// Runs last (tests in a file run in order): stop the shared server.
Deno.test({
  name: "discovery: stop the shared etcd" + tools.note,
  ignore: tools.ignore,
  async fn() {
    await (await shared)?.stop();
  },
});
