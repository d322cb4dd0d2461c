/**
 * Body size limit middleware: rejects bodies over the limit with 413 PAYLOAD TOO LARGE,
 * whether announced by `Content-Length` or streamed without one. The body is read at most
 * up to the limit, so a huge upload costs bounded memory.
 * @module
 */
import { AppError } from "../kernel/mod.ts";
import { errorResponse, type Middleware } from "./_http.ts";

/**
 * Create the body limit middleware.
 * @example
 * ```ts
 * const mw = bodyLimit({ maxBytes: 1 << 20 });
 * ```
 */
export function bodyLimit(options: { maxBytes: number }): Middleware {
  const { maxBytes } = options;
  return async function bodyLimitMiddleware(req, ctx, next) {
    if (req.body === null) return next(req);
    const declared = Number(req.headers.get("content-length") ?? NaN);
    if (Number.isFinite(declared) && declared > maxBytes) return tooLarge(ctx, maxBytes);
    const chunks: Uint8Array[] = [];
    let size = 0;
    const reader = req.body.getReader();
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        await reader.cancel().catch(() => {});
        return tooLarge(ctx, maxBytes);
      }
      chunks.push(value);
    }
    const body = new Uint8Array(size);
    let offset = 0;
    for (const chunk of chunks) {
      body.set(chunk, offset);
      offset += chunk.byteLength;
    }
    return next(new Request(req.url, { method: req.method, headers: req.headers, body }));
  };
}

function tooLarge(ctx: Parameters<Middleware>[1], maxBytes: number): Response {
  const response = errorResponse(
    ctx,
    new AppError("RESOURCE_EXHAUSTED", `Request body exceeds ${maxBytes} bytes`, {
      details: { max_bytes: maxBytes },
    }),
  );
  return new Response(response.body, { status: 413, headers: response.headers });
}
