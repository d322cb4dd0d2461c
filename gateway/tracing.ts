/**
 * OpenTelemetry HTTP server spans (`{method} {route}` with `http.request.method`,
 * `url.path`, `http.route`, `http.response.status_code`; status Error only for 5xx) through
 * `@opentelemetry/api` — exported by Deno's built-in OpenTelemetry when `OTEL_DENO=true`,
 * no-ops otherwise. The trace context is kept on the request context as a W3C
 * `traceparent` so backend calls carry it in gRPC metadata (Deno does not trace grpc-js).
 * @module
 */
import { context, propagation, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { Middleware } from "./_http.ts";

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/**
 * Create the tracing middleware.
 * @example
 * ```ts
 * const app = compose([requestId(), tracing()], handler);
 * ```
 */
export function tracing(): Middleware {
  const tracer = trace.getTracer("aetherflow-gateway");
  return (req, ctx, next) => {
    const carrier: Record<string, string> = {};
    req.headers.forEach((value, key) => carrier[key] = value);
    const parent = propagation.extract(context.active(), carrier);
    const url = new URL(req.url);
    return tracer.startActiveSpan(
      req.method,
      {
        kind: SpanKind.SERVER,
        attributes: { "http.request.method": req.method, "url.path": url.pathname },
      },
      parent,
      async (span) => {
        const out: Record<string, string> = {};
        propagation.inject(context.active(), out);
        const incoming = req.headers.get("traceparent");
        ctx.traceparent = out.traceparent ??
          (incoming !== null && TRACEPARENT.test(incoming) ? incoming : undefined);
        let status = 500;
        try {
          const response = await next(req);
          status = response.status;
          return response;
        } finally {
          if (ctx.route) {
            span.updateName(`${req.method} ${ctx.route}`);
            span.setAttribute("http.route", ctx.route);
          }
          span.setAttribute("http.response.status_code", status);
          if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
          span.end();
        }
      },
    );
  };
}
