/**
 * Cost of the gateway's gRPC path against a real in-process statesync service: a unary
 * call with plain insecure credentials vs the GOAWAY-guarded ones the gateway uses.
 * Run: `deno bench -A gateway/grpc_backends_bench.ts`.
 * @module
 */
import { startStateSyncService, StateSyncConfigSchema } from "../statesync/mod.ts";
import { tcpTarget } from "./_testing.ts";
import { BreakerRegistry } from "./breaker.ts";
import { createGrpcBackends } from "./grpc_backends.ts";

const service = await startStateSyncService(
  StateSyncConfigSchema.parse({ port: 0, storage: "memory" }),
);
const target = { ...tcpTarget(service.address), retries: 0, defaultTimeoutMs: 5_000 };
const guarded = await createGrpcBackends({
  session: target,
  statesync: target,
  breakers: new BreakerRegistry(),
});
const plain = await createGrpcBackends({
  session: target,
  statesync: target,
  breakers: new BreakerRegistry(),
  filterGoaway: false,
});
await guarded.statesync.getStats({});
await plain.statesync.getStats({});

Deno.bench("unary GetStats, plain", { group: "unary", baseline: true }, async () => {
  await plain.statesync.getStats({});
});

Deno.bench("unary GetStats, GOAWAY-guarded", { group: "unary" }, async () => {
  await guarded.statesync.getStats({});
});

Deno.bench("unary GetStats x32 concurrent, plain", { group: "x32", baseline: true }, async () => {
  await Promise.all(Array.from({ length: 32 }, () => plain.statesync.getStats({})));
});

Deno.bench("unary GetStats x32 concurrent, GOAWAY-guarded", { group: "x32" }, async () => {
  await Promise.all(Array.from({ length: 32 }, () => guarded.statesync.getStats({})));
});
