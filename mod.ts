/**
 * AetherFlow: a low-latency backend for real-time collaborative apps.
 * Re-exports the kernel and Quantum at the top level, and each service package as a
 * namespace (their names overlap: `session.ListOptions`, `statesync.ListOptions`, ...).
 *
 * @example
 * ```ts
 * import { dial, listen, newId, session, statesync } from "./mod.ts";
 * ```
 * @module
 */
export * from "./kernel/mod.ts";
export * from "./quantum/mod.ts";
// Both define `Clock`: kernel's is epoch-ms time for services, quantum's is monotonic time
// with timers for the transport. The root keeps quantum's (as before kernel had one);
// kernel's is available as `Clock` from kernel/mod.ts.
export type { Clock } from "./quantum/mod.ts";
export * as session from "./session/mod.ts";
export * as statesync from "./statesync/mod.ts";
export * as gateway from "./gateway/mod.ts";
