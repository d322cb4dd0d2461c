/**
 * AetherFlow: a low-latency backend for real-time collaborative apps.
 * Re-exports the public API of each package.
 * @module
 */
export * from "./kernel/mod.ts";
export * from "./quantum/mod.ts";
