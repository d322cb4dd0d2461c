import assert from "node:assert/strict";
import {
  type Context,
  context,
  type Span,
  type SpanContext,
  SpanKind,
  type SpanOptions,
  SpanStatusCode,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import { contextFromTraceparent, grpcServerTracing, isNoopSpan, withSpan } from "./tracing.ts";

/** What a recorded span holds. */
interface Recorded {
  name: string;
  kind: SpanKind | undefined;
  parent: SpanContext | undefined;
  attributes: Record<string, unknown>;
  status: { code: SpanStatusCode; message?: string | undefined };
  exceptions: unknown[];
  ended: boolean;
  context: SpanContext;
}

/** A tracer that records spans in memory (the test's stand-in for Deno's exporter). */
function recordingTracer(): { tracer: Tracer; spans: Recorded[] } {
  const spans: Recorded[] = [];
  let next = 1;
  const startSpan = (name: string, options: SpanOptions = {}, ctx?: Context): Span => {
    const parent = ctx ? trace.getSpanContext(ctx) : undefined;
    const record: Recorded = {
      name,
      kind: options.kind,
      parent,
      attributes: { ...options.attributes },
      status: { code: SpanStatusCode.UNSET },
      exceptions: [],
      ended: false,
      context: {
        traceId: parent?.traceId ?? "1".repeat(32),
        spanId: (next++).toString(16).padStart(16, "0"),
        traceFlags: 1,
      },
    };
    spans.push(record);
    const span: Span = {
      spanContext: () => record.context,
      setAttribute(key, value) {
        record.attributes[key] = value;
        return span;
      },
      setAttributes(attributes) {
        Object.assign(record.attributes, attributes);
        return span;
      },
      addEvent: () => span,
      addLink: () => span,
      addLinks: () => span,
      setStatus(status) {
        record.status = status;
        return span;
      },
      updateName(newName) {
        record.name = newName;
        return span;
      },
      end() {
        record.ended = true;
      },
      isRecording: () => !record.ended,
      recordException(exception) {
        record.exceptions.push(exception);
      },
    };
    return span;
  };
  const tracer = {
    startSpan,
    startActiveSpan(name: string, ...rest: unknown[]) {
      const fn = rest.pop() as (span: Span) => unknown;
      const [options, ctx] = rest as [SpanOptions | undefined, Context | undefined];
      return fn(startSpan(name, options, ctx));
    },
  } as Tracer;
  return { tracer, spans };
}

function withTracer<T>(fn: (spans: Recorded[]) => T): T {
  const { tracer, spans } = recordingTracer();
  trace.setGlobalTracerProvider({ getTracer: () => tracer });
  try {
    return fn(spans);
  } finally {
    trace.disable();
  }
}

const PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

function fakeCall(traceparent?: string) {
  return {
    metadata: { get: (key: string) => key === "traceparent" && traceparent ? [traceparent] : [] },
  };
}

Deno.test("grpcServerTracing opens a SERVER span under the caller's traceparent and records server faults", () => {
  withTracer((spans) => {
    const hook = grpcServerTracing("test");
    const method = { service: "pkg.Service", method: "Get", path: "/pkg.Service/Get" };
    // A caller error (NOT_FOUND) is not a span error.
    hook.start(method, fakeCall(PARENT))!.end(5);
    // A server fault (INTERNAL) is, with the exception recorded.
    const failure = new Error("disk on fire");
    hook.start(method, fakeCall(PARENT))!.end(13, failure);
    // Without a traceparent the span is a root.
    hook.start(method, fakeCall())!.end(0);
    assert.equal(spans.length, 3);
    const [notFound, internal, root] = spans as [Recorded, Recorded, Recorded];
    for (const span of spans) {
      assert.equal(span.name, "pkg.Service/Get");
      assert.equal(span.kind, SpanKind.SERVER);
      assert.equal(span.attributes["rpc.system"], "grpc");
      assert.equal(span.attributes["rpc.method"], "Get");
      assert.ok(span.ended);
    }
    assert.equal(notFound.parent?.traceId, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert.equal(notFound.parent?.spanId, "00f067aa0ba902b7");
    assert.equal(notFound.parent?.isRemote, true);
    assert.equal(notFound.attributes["rpc.grpc.status_code"], 5);
    assert.equal(notFound.status.code, SpanStatusCode.UNSET);
    assert.deepEqual(notFound.exceptions, []);
    assert.equal(internal.status.code, SpanStatusCode.ERROR);
    assert.equal(internal.status.message, "disk on fire");
    assert.deepEqual(internal.exceptions, [failure]);
    assert.equal(root.parent, undefined);
  });
});

Deno.test("isNoopSpan: true for the no-op tracer without a caller trace, false once a trace is passed on", () => {
  const tracer = trace.getTracer("noop-test"); // no provider registered: the no-op tracer
  assert.equal(isNoopSpan(tracer.startSpan("untraced")), true);
  const parent = contextFromTraceparent(
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
  );
  assert.equal(isNoopSpan(tracer.startSpan("child of a caller trace", {}, parent)), false);
});

Deno.test("withSpan makes a recording span active for fn, and runs fn as it is for a no-op span", () => {
  const { tracer } = recordingTracer();
  const recording = tracer.startSpan("recorded");
  const noop = trace.getTracer("noop-test").startSpan("untraced"); // no provider: the no-op tracer
  const switched: (Span | undefined)[] = [];
  const original = context.with.bind(context);
  context.with = ((ctx: Context, fn: () => unknown) => {
    switched.push(trace.getSpan(ctx));
    return original(ctx, fn);
  }) as typeof context.with;
  try {
    for (const span of [noop, recording]) {
      let calls = 0;
      assert.equal(withSpan(span, () => ++calls * 10), 10);
      assert.equal(calls, 1);
    }
  } finally {
    context.with = original;
  }
  assert.deepEqual(switched, [recording]);
});
