/**
 * Prometheus metrics of the gateway (prom-client, one registry per gateway): HTTP requests
 * and durations by route (never by user), WebSocket connections, messages and ops, circuit
 * breaker state per backend method, and rate-limit rejections. Served at `/metrics`.
 *
 * @example
 * ```ts
 * const metrics = new GatewayMetrics({ hub, breakers });
 * const app = compose([metrics.middleware()], handler);
 * await metrics.text(); // Prometheus exposition format
 * ```
 * @module
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { createMetricsRegistry } from "../kernel/mod.ts";
import type { Middleware } from "./_http.ts";
import type { BreakerRegistry } from "./breaker.ts";
import type { WsHub } from "./ws_hub.ts";

/** The gateway's metrics. */
export class GatewayMetrics {
  readonly registry: Registry;
  #requests: Counter<"method" | "route" | "status">;
  #duration: Histogram<"method" | "route">;
  #inFlight: Gauge;
  #rateLimited: Counter<"policy">;

  /**
   * @param sources where WebSocket and breaker numbers come from
   * @param options.registry the registry to add to (default: a new one with process metrics),
   *   e.g. shared with the gRPC client metrics of the backends
   */
  constructor(
    sources: { hub: WsHub; breakers: BreakerRegistry },
    options: { registry?: Registry } = {},
  ) {
    this.registry = options.registry ?? createMetricsRegistry();
    const registers = [this.registry];
    this.#requests = new Counter({
      name: "aetherflow_gateway_http_requests_total",
      help: "HTTP requests by method, route pattern and status code.",
      labelNames: ["method", "route", "status"],
      registers,
    });
    this.#duration = new Histogram({
      name: "aetherflow_gateway_http_request_duration_seconds",
      help: "HTTP request duration by method and route pattern.",
      labelNames: ["method", "route"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    const { hub, breakers } = sources;
    new Gauge({
      name: "aetherflow_gateway_websocket_connections",
      help: "Open WebSocket connections.",
      registers,
      collect() {
        this.set(hub.stats().connections);
      },
    });
    const counterFrom = (name: string, help: string, read: () => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    counterFrom(
      "aetherflow_gateway_websocket_messages_received_total",
      "WebSocket messages received from clients.",
      () => hub.stats().messagesIn,
    );
    counterFrom(
      "aetherflow_gateway_websocket_messages_sent_total",
      "WebSocket messages sent to clients.",
      () => hub.stats().messagesOut,
    );
    counterFrom(
      "aetherflow_gateway_operations_acked_total",
      "Document operations acknowledged over WebSocket.",
      () => hub.stats().opsAcked,
    );
    counterFrom(
      "aetherflow_gateway_websocket_slow_consumers_closed_total",
      "Connections closed because their outgoing queue was full.",
      () => hub.stats().slowConsumersClosed,
    );
    new Gauge({
      name: "aetherflow_gateway_breaker_open",
      help: "1 when the circuit breaker of a backend method is shedding calls, else 0.",
      labelNames: ["name"],
      registers,
      collect() {
        this.reset();
        for (const s of breakers.stats()) this.set({ name: s.name }, s.state === "open" ? 1 : 0);
      },
    });
    new Gauge({
      name: "aetherflow_gateway_breaker_drop_ratio",
      help: "Drop probability of a backend method's breaker (go-zero formula).",
      labelNames: ["name"],
      registers,
      collect() {
        this.reset();
        for (const s of breakers.stats()) this.set({ name: s.name }, s.dropRatio);
      },
    });
    this.#inFlight = new Gauge({
      name: "aetherflow_gateway_http_requests_in_flight",
      help: "HTTP requests being handled.",
      registers,
    });
    let wsRateLimitedSeen = 0;
    const rateLimited = new Counter({
      name: "aetherflow_gateway_rate_limited_total",
      help: "Requests rejected by a rate limit, by policy (ip, user: HTTP 429; websocket).",
      labelNames: ["policy"],
      registers,
      collect() {
        // The WebSocket limiter counts in the hub; HTTP rejections are counted as they pass.
        this.inc({ policy: "websocket" }, hub.stats().rateLimited - wsRateLimitedSeen);
        wsRateLimitedSeen = hub.stats().rateLimited;
      },
    });
    for (const policy of ["ip", "user", "websocket"]) rateLimited.inc({ policy }, 0);
    this.#rateLimited = rateLimited;
    new Counter({
      name: "aetherflow_gateway_breaker_rejected_total",
      help: "Calls rejected by a backend method's breaker.",
      labelNames: ["name"],
      registers,
      collect() {
        this.reset();
        for (const s of breakers.stats()) this.inc({ name: s.name }, s.rejected);
      },
    });
  }

  /** Middleware recording every request (place it right after the request id). */
  middleware(): Middleware {
    return async (req, ctx, next) => {
      const started = performance.now();
      let status = 500;
      this.#inFlight.inc();
      try {
        const response = await next(req);
        status = response.status;
        // A rate limiter's 429 names its policy first in RateLimit-Policy: `"ip";q=200;w=2`.
        const policy = /^"([a-z]+)"/.exec(response.headers.get("ratelimit-policy") ?? "")?.[1];
        if (status === 429 && policy !== undefined) this.#rateLimited.inc({ policy });
        return response;
      } finally {
        this.#inFlight.dec();
        const route = ctx.route || "unmatched";
        this.#requests.inc({ method: req.method, route, status: String(status) });
        this.#duration.observe(
          { method: req.method, route },
          (performance.now() - started) / 1000,
        );
      }
    };
  }

  /** The exposition text. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** The exposition content type. */
  get contentType(): string {
    return this.registry.contentType;
  }
}
