/**
 * OpenTelemetry helpers for the gRPC services, through `@opentelemetry/api` (exported by
 * Deno's built-in OpenTelemetry when `OTEL_DENO=true`, no-ops otherwise). Deno does not trace
 * grpc-js, so the caller's W3C `traceparent` travels in gRPC metadata (or in a message field
 * on a stream carrying many operations) and is extracted here.
 *
 * @example
 * ```ts
 * const grpc = new GrpcServerMetrics(registry);
 * server.addService(Definition, grpc.instrument(Definition, handlers, {
 *   hooks: [grpcServerTracing("aetherflow-statesync")],
 * }));
 * ```
 * @module
 */
import {
  type Context,
  context,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import type { CallHook } from "./metrics.ts";
import { StatusCode } from "./errors.ts";

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * The context whose remote parent is the W3C `traceparent` value, or `base` when the value
 * is missing or malformed. Parsed here (not through the global propagator) so it works the
 * same whether or not a propagator is registered.
 * @example
 * ```ts
 * const parent = contextFromTraceparent(metadata.get("traceparent")[0]);
 * tracer.startActiveSpan("work", {}, parent, (span) => span.end());
 * ```
 */
export function contextFromTraceparent(
  traceparent: unknown,
  base: Context = context.active(),
): Context {
  if (typeof traceparent !== "string") return base;
  const match = TRACEPARENT.exec(traceparent.trim());
  if (match === null || match[1] === "ff") return base;
  const traceId = match[2]!;
  const spanId = match[3]!;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return base;
  return trace.setSpanContext(base, {
    traceId,
    spanId,
    traceFlags: parseInt(match[4]!, 16) & 1,
    isRemote: true,
  });
}

/**
 * The W3C `traceparent` of the active span (to pass on to the next hop), or undefined when
 * there is none (tracing off).
 */
export function currentTraceparent(ctx: Context = context.active()): string | undefined {
  const span = trace.getSpan(ctx);
  if (span === undefined) return undefined;
  const sc = span.spanContext();
  if (!trace.isSpanContextValid(sc)) return undefined;
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 1) === 1 ? "01" : "00"}`;
}

/** The trace id of the active span, or undefined (for log records). */
export function currentTraceId(ctx: Context = context.active()): string | undefined {
  const span = trace.getSpan(ctx);
  if (span === undefined) return undefined;
  const sc = span.spanContext();
  return trace.isSpanContextValid(sc) ? sc.traceId : undefined;
}

/**
 * True for a span that records nothing and carries no trace (the no-op tracer with no caller
 * trace): there is nothing to pass on, so a hot path may skip making it the active span.
 */
export function isNoopSpan(span: Span): boolean {
  return !span.isRecording() && !trace.isSpanContextValid(span.spanContext());
}

/**
 * Run `fn` with `span` active under `parent` (default: the active context), so spans started
 * inside are its children. A no-op span ({@link isNoopSpan}) has nothing to pass on: `fn`
 * runs as it is, without the context switch (hot paths call this for every operation).
 */
export function withSpan<T>(span: Span, fn: () => T, parent: Context = context.active()): T {
  return isNoopSpan(span) ? fn() : context.with(trace.setSpan(parent, span), fn);
}

/** Mark `span` failed with `error` (recorded as an exception event). */
export function recordSpanError(span: Span, error: unknown): void {
  if (error instanceof Error) span.recordException(error);
  else span.recordException({ message: String(error) });
  span.setStatus({
    code: SpanStatusCode.ERROR,
    message: error instanceof Error ? error.message : String(error),
  });
}

/** Codes that make a server span an error (OpenTelemetry RPC conventions). */
const SERVER_ERROR_CODES = new Set<number>([
  StatusCode.UNKNOWN,
  StatusCode.DEADLINE_EXCEEDED,
  StatusCode.UNIMPLEMENTED,
  StatusCode.INTERNAL,
  StatusCode.UNAVAILABLE,
  StatusCode.DATA_LOSS,
]);

/**
 * A {@link CallHook} that starts a server span per gRPC call (`{service}/{method}`, with
 * `rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`), child of the caller's
 * `traceparent` metadata. The handler runs inside the span's context, so spans made in it
 * (e.g. around a store commit) become its children.
 */
export function grpcServerTracing(tracerName: string): CallHook {
  const tracer = trace.getTracer(tracerName);
  return {
    start(method, call) {
      const metadata = (call as { metadata?: { get(key: string): unknown[] } }).metadata;
      const parent = contextFromTraceparent(metadata?.get("traceparent")[0]);
      const span = tracer.startSpan(`${method.service}/${method.method}`, {
        kind: SpanKind.SERVER,
        attributes: {
          "rpc.system": "grpc",
          "rpc.service": method.service,
          "rpc.method": method.method,
        },
      }, parent);
      const active = trace.setSpan(parent, span);
      return {
        run: (fn) => context.with(active, fn),
        end(code, error) {
          span.setAttribute("rpc.grpc.status_code", code);
          if (SERVER_ERROR_CODES.has(code)) {
            if (error !== undefined) recordSpanError(span, error);
            else span.setStatus({ code: SpanStatusCode.ERROR });
          }
          span.end();
        },
      };
    },
  };
}
