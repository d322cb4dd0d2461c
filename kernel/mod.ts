/**
 * The shared kernel every AetherFlow package builds on: ids, errors, config,
 * logging. Test helpers live in `kernel/testing.ts` and are not re-exported here.
 * @module
 */
export * from "./ids.ts";
export * from "./errors.ts";
export * from "./log.ts";
export * from "./config.ts";
export * from "./metrics.ts";
export * from "./tracing.ts";
export * from "./call_gate.ts";
export * from "./grpc_guard.ts";
export * from "./health.ts";
export * from "./clock.ts";
