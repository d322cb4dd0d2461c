/**
 * Test helper process: registers one instance and waits to be killed.
 * Args: endpoint prefix service ttlSeconds tcpAddress. Prints `registered <id>` when done.
 * @module
 */
import { connectEtcd } from "./etcd.ts";
import { registerService } from "./discovery.ts";

const [endpoint, prefix, service, ttl, tcp] = Deno.args;
const etcd = await connectEtcd({ endpoints: [endpoint!], prefix: prefix! });
const registration = await registerService(etcd, {
  service: service!,
  address: { tcp: tcp!, quantum: "" },
  ttlSeconds: Number(ttl),
});
console.log(`registered ${registration.id}`);
await new Promise(() => {});
