/**
 * Structured access log middleware: one JSON record per request with method, route,
 * path, status, duration, client IP, user, request id and trace id.
 * @module
 */
import type { Logger } from "../kernel/mod.ts";
import type { Middleware } from "./_http.ts";

/** Options for {@link accessLog}. */
export interface AccessLogOptions {
  /** Where records go. */
  logger: Logger;
  /** Monotonic clock in ms (default `performance.now`). */
  now?: () => number;
}

/**
 * Create the access log middleware.
 * @example
 * ```ts
 * const app = compose([requestId(), accessLog({ logger })], handler);
 * ```
 */
export function accessLog(options: AccessLogOptions): Middleware {
  const now = options.now ?? (() => performance.now());
  return async function accessLogMiddleware(req, ctx, next) {
    const started = now();
    const url = new URL(req.url);
    let status = 500;
    try {
      const response = await next(req);
      status = response.status;
      return response;
    } finally {
      const fields = {
        request_id: ctx.requestId,
        // The W3C trace id of the request (set by the tracing middleware), for log ↔ trace.
        trace_id: ctx.traceparent?.split("-")[1],
        method: req.method,
        route: ctx.route || undefined,
        path: url.pathname,
        status,
        duration_ms: Math.round((now() - started) * 1000) / 1000,
        client_ip: ctx.ip,
        user_id: ctx.user?.id,
      };
      if (status >= 500) options.logger.warn("HTTP request", fields);
      else options.logger.info("HTTP request", fields);
    }
  };
}
