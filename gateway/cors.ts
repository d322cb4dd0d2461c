/**
 * CORS middleware: answers preflights and adds `Access-Control-*` headers for allowed
 * origins. Requests from other origins get no CORS headers (the browser blocks them).
 * @module
 */
import type { Middleware } from "./_http.ts";

/** Options for {@link cors}. */
export interface CorsOptions {
  /** Allowed origins; `"*"` allows any. */
  origins: readonly string[];
  /** Allowed methods (default GET, POST, PUT, PATCH, DELETE, OPTIONS). */
  methods?: readonly string[];
  /** Preflight cache lifetime in seconds (default 600). */
  maxAgeSeconds?: number;
}

/**
 * Create the CORS middleware.
 * @example
 * ```ts
 * const mw = cors({ origins: ["https://app.example"] });
 * ```
 */
export function cors(options: CorsOptions): Middleware {
  const any = options.origins.includes("*");
  const allowed = new Set(options.origins);
  const methods = (options.methods ?? ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]).join(
    ", ",
  );
  const maxAge = String(options.maxAgeSeconds ?? 600);
  return async function corsMiddleware(req, _ctx, next) {
    const origin = req.headers.get("origin");
    const permitted = origin !== null && (any || allowed.has(origin));
    if (req.method === "OPTIONS" && req.headers.has("access-control-request-method")) {
      const headers = new Headers({ vary: "Origin" });
      if (permitted) {
        headers.set("access-control-allow-origin", any ? "*" : origin);
        headers.set("access-control-allow-methods", methods);
        headers.set(
          "access-control-allow-headers",
          req.headers.get("access-control-request-headers") ?? "authorization, content-type",
        );
        headers.set("access-control-max-age", maxAge);
      }
      return new Response(null, { status: 204, headers });
    }
    const response = await next(req);
    if (permitted) {
      response.headers.set("access-control-allow-origin", any ? "*" : origin);
      response.headers.set(
        "access-control-expose-headers",
        "x-request-id, ratelimit, ratelimit-policy, retry-after",
      );
      response.headers.append("vary", "Origin");
    }
    return response;
  };
}
