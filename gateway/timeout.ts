/**
 * Timeout middleware: sets the request's absolute deadline (the remaining budget becomes
 * the gRPC deadline of every backend call) and answers 504 when the handler overruns it.
 * @module
 */
import { AppError } from "../kernel/mod.ts";
import { errorResponse, type Middleware } from "./_http.ts";

/** Options for {@link timeout}. */
export interface TimeoutOptions {
  /** Budget in ms for this route. */
  ms: number;
  /** Wall clock in epoch ms (default `Date.now`). */
  now?: () => number;
}

/**
 * Create the timeout middleware.
 * @example
 * ```ts
 * const mw = timeout({ ms: 2_000 });
 * ```
 */
export function timeout(options: TimeoutOptions): Middleware {
  const now = options.now ?? Date.now;
  return async function timeoutMiddleware(req, ctx, next) {
    const controller = new AbortController();
    ctx.deadline = Math.min(ctx.deadline, now() + options.ms);
    ctx.signal = controller.signal;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<Response>((resolve) => {
      timer = setTimeout(() => {
        controller.abort(new AppError("DEADLINE_EXCEEDED", "Request timed out"));
        resolve(errorResponse(
          ctx,
          new AppError("DEADLINE_EXCEEDED", `Request exceeded its ${options.ms} ms budget`),
        ));
      }, Math.max(0, ctx.deadline - now()));
    });
    try {
      return await Promise.race([next(req), expired]);
    } finally {
      clearTimeout(timer);
    }
  };
}
