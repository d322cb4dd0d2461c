/**
 * Cost of the gateway's gRPC path against a real in-process statesync service: a unary
 * call direct vs through the GOAWAY filter relay, and a SubmitOperations round trip.
 * Run: `deno bench -A gateway/grpc_backends_bench.ts`.
 * @module
 */
import { startStateSyncService, StateSyncConfigSchema } from "../statesync/mod.ts";
import { BreakerRegistry } from "./breaker.ts";
import { createGrpcBackends } from "./grpc_backends.ts";

const service = await startStateSyncService(
  StateSyncConfigSchema.parse({ port: 0, storage: "memory" }),
);
const target = {
  address: service.address,
  transport: "tcp" as const,
  required: true,
  retries: 0,
  defaultTimeoutMs: 5_000,
};
const filtered = await createGrpcBackends({
  session: target,
  statesync: target,
  breakers: new BreakerRegistry(),
});
const direct = await createGrpcBackends({
  session: target,
  statesync: target,
  breakers: new BreakerRegistry(),
  filterGoaway: false,
});
await filtered.statesync.getStats({});
await direct.statesync.getStats({});

Deno.bench("unary GetStats, direct", { group: "unary", baseline: true }, async () => {
  await direct.statesync.getStats({});
});

Deno.bench("unary GetStats, through the GOAWAY filter", { group: "unary" }, async () => {
  await filtered.statesync.getStats({});
});

Deno.bench("unary GetStats x32 concurrent, direct", { group: "x32", baseline: true }, async () => {
  await Promise.all(Array.from({ length: 32 }, () => direct.statesync.getStats({})));
});

Deno.bench("unary GetStats x32 concurrent, filter", { group: "x32" }, async () => {
  await Promise.all(Array.from({ length: 32 }, () => filtered.statesync.getStats({})));
});
