/**
 * A span per WebSocket operation (`WS {type}`, kind SERVER), through `@opentelemetry/api`
 * (exported by Deno's built-in OpenTelemetry when `OTEL_DENO=true`). The operation's
 * handler runs inside the span, so `currentTraceparent()` from the kernel gives the context
 * to pass on to statesync (in gRPC metadata, or in the message on the shared submit stream).
 * Errors are recorded on the span; only server faults (5xx-class) set its status to Error.
 *
 * @example
 * ```ts
 * await traceWsOperation("op", () => dispatch(conn, message));
 * ```
 * @module
 */
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { AppError, isNoopSpan } from "../kernel/mod.ts";

const tracer = trace.getTracer("aetherflow-gateway");

/** Run `fn` (the handling of one WebSocket message of `type`) in its own span. */
export function traceWsOperation<T>(type: string, fn: () => Promise<T>): Promise<T> {
  const span = tracer.startSpan(`WS ${type}`, {
    kind: SpanKind.SERVER,
    attributes: { "aetherflow.ws.message_type": type },
  });
  // Tracing off (the no-op tracer): nothing to record or pass on, so skip the context switch
  // and the wrapper — this runs for every message, ops included.
  if (isNoopSpan(span)) return fn();
  return context.with(trace.setSpan(context.active(), span), async () => {
    try {
      return await fn();
    } catch (error) {
      const appError = AppError.from(error);
      span.recordException(appError);
      span.setAttribute("rpc.grpc.status_code", appError.code);
      if (appError.httpStatus >= 500) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: appError.message });
      }
      throw error;
    } finally {
      span.end();
    }
  });
}
