/**
 * The load tool's scenarios: what each one does and its default size.
 * @module
 */

/** What a scenario's workers do. */
export type ScenarioKind =
  /** A REST mix: document reads, lists, operations, auth/me, ping. */
  | "http"
  /** Hammer an authenticated route above the rate limit; checks 429 + headers. */
  | "ratelimit"
  /** Login / refresh rotation / reuse detection / logout churn. */
  | "auth"
  /** WebSockets subscribing to documents and sending text operations. */
  | "websocket";

/** A named scenario with its defaults (flags override them). */
export interface Scenario {
  name: string;
  kind: ScenarioKind;
  /** Concurrent workers (HTTP) or sockets (websocket). */
  concurrency: number;
  durationMs: number;
  /** Target total rate in requests (or ops) per second; 0 = as fast as the workers go. */
  rate: number;
  description: string;
}

/** Every scenario by name. */
export const SCENARIOS: Readonly<Record<string, Scenario>> = {
  basic: {
    name: "basic",
    kind: "http",
    concurrency: 10,
    durationMs: 30_000,
    rate: 0,
    description: "REST mix, 10 concurrent, 30 s",
  },
  medium: {
    name: "medium",
    kind: "http",
    concurrency: 50,
    durationMs: 60_000,
    rate: 0,
    description: "REST mix, 50 concurrent, 1 min",
  },
  heavy: {
    name: "heavy",
    kind: "http",
    concurrency: 100,
    durationMs: 120_000,
    rate: 0,
    description: "REST mix, 100 concurrent, 2 min",
  },
  spike: {
    name: "spike",
    kind: "http",
    concurrency: 200,
    durationMs: 30_000,
    rate: 0,
    description: "REST mix, 200 concurrent all at once, 30 s",
  },
  sustained: {
    name: "sustained",
    kind: "http",
    concurrency: 50,
    durationMs: 300_000,
    rate: 0,
    description: "REST mix, 50 concurrent, 5 min (watch gateway RSS growth)",
  },
  ratelimit: {
    name: "ratelimit",
    kind: "ratelimit",
    concurrency: 20,
    durationMs: 10_000,
    rate: 1000,
    description: "GET /api/v1/auth/me, 20 concurrent at 1000 req/s; verifies 429 + headers",
  },
  auth: {
    name: "auth",
    kind: "auth",
    concurrency: 10,
    durationMs: 30_000,
    rate: 0,
    description: "login, refresh rotation, reuse detection, logout churn",
  },
  websocket: {
    name: "websocket",
    kind: "websocket",
    concurrency: 50,
    durationMs: 30_000,
    rate: 500,
    description: "N sockets subscribed to N/10 documents sending text inserts",
  },
};
