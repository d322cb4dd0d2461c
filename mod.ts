/**
 * AetherFlow: a low-latency backend for real-time collaborative apps.
 * Re-exports the public API of each package.
 * @module
 */
export * from "./kernel/mod.ts";
export * from "./quantum/mod.ts";
// Both define `Clock`: kernel's is epoch-ms time for services, quantum's is monotonic time
// with timers for the transport. The root keeps quantum's (as before kernel had one);
// kernel's is available as `Clock` from kernel/mod.ts.
export type { Clock } from "./quantum/mod.ts";
