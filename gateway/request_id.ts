/**
 * Request id middleware: honours a valid incoming `X-Request-ID` (a UUIDv7), else makes a
 * new UUIDv7, stores it on the context and echoes it on the response.
 * @module
 */
import { newId, parseId } from "../kernel/mod.ts";
import type { Middleware } from "./_http.ts";

/** The request id header. */
export const REQUEST_ID_HEADER = "x-request-id";

/**
 * Create the request id middleware.
 * @example
 * ```ts
 * const app = compose([requestId()], handler);
 * ```
 */
export function requestId(): Middleware {
  return async function requestIdMiddleware(req, ctx, next) {
    ctx.requestId = incomingId(req.headers.get(REQUEST_ID_HEADER)) ?? newId();
    ctx.log = ctx.log.with({ request_id: ctx.requestId });
    const response = await next(req);
    response.headers.set(REQUEST_ID_HEADER, ctx.requestId);
    return response;
  };
}

function incomingId(value: string | null): string | undefined {
  if (value === null) return undefined;
  try {
    return parseId(value.trim(), "request id");
  } catch {
    return undefined; // not a UUIDv7: replace it rather than trust arbitrary input
  }
}
