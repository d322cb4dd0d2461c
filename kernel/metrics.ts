/**
 * Prometheus metrics shared by the services (prom-client): a registry per process with the
 * default process metrics, gRPC server and client call metrics by method and status code
 * (`aetherflow_grpc_server_handled_total`, `aetherflow_grpc_server_handling_seconds`,
 * `aetherflow_grpc_client_handled_total`, `aetherflow_grpc_client_handling_seconds`), and a
 * tiny `Deno.serve` endpoint with `/metrics` and `/health` for the gRPC services.
 *
 * Naming follows Prometheus: base units, counters end in `_total`, and labels never carry
 * user, session or document ids (only service, method and code).
 *
 * @example
 * ```ts
 * const registry = createMetricsRegistry();
 * const grpc = new GrpcServerMetrics(registry);
 * server.addService(Definition, grpc.instrument(Definition, handlers));
 * await using endpoint = serveMetrics(registry, { port: 9464 });
 * ```
 * @module
 */
import { collectDefaultMetrics, Counter, Histogram, Registry } from "prom-client";
import { StatusCode } from "./errors.ts";

export { Counter, Gauge, Histogram, Registry } from "prom-client";

/** Latency buckets (seconds) for RPC and request durations: 0.5 ms .. 10 s. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

const LINT_FAILING_DEFAULTS = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];

/** Options for {@link createMetricsRegistry}. */
export interface RegistryOptions {
  /** Register prom-client's default process metrics (default true). */
  processMetrics?: boolean;
}

/**
 * A fresh registry with the default process metrics (`process_cpu_seconds_total`,
 * `process_resident_memory_bytes`, `nodejs_heap_size_used_bytes`, ...).
 * @example
 * ```ts
 * const registry = createMetricsRegistry();
 * console.log(await registry.metrics());
 * ```
 */
export function createMetricsRegistry(options: RegistryOptions = {}): Registry {
  const registry = new Registry();
  if (options.processMetrics !== false) {
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 10 });
    // Gauges named like counters (promtool: non-counter metrics should not end in _total);
    // the same numbers stay available as nodejs_active_{handles,requests,resources}.
    for (const name of LINT_FAILING_DEFAULTS) registry.removeSingleMetric(name);
  }
  return registry;
}

/** The name of a gRPC status code (`"OK"`, `"NOT_FOUND"`, ...), or the number as text. */
export function grpcCodeName(code: number): string {
  for (const [name, value] of Object.entries(StatusCode)) if (value === code) return name;
  return String(code);
}

/** The shape of a grpc-js service definition entry this module reads. */
interface MethodDefinition {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

/** `"/pkg.Service/Method"` → `["pkg.Service", "Method"]`. */
function splitPath(path: string): [string, string] {
  const match = /^\/?([^/]+)\/([^/]+)$/.exec(path);
  if (match === null) throw new TypeError(`Invalid gRPC method path: ${path}`);
  return [match[1]!, match[2]!];
}

type AnyHandler = (...args: unknown[]) => unknown;
type ServerCall = {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
};

/** What a {@link CallHook} returns for one call. */
export interface CallScope {
  /** Called once when the call ends, with its status code (and the error when it failed). */
  end(code: number, error?: unknown): void;
  /** Runs the handler (e.g. inside a span's context); default: just call it. */
  run?<T>(fn: () => T): T;
}

/** Per-call hook of {@link GrpcServerMetrics.instrument}: wraps one call's handling. */
export interface CallHook {
  /** Called when a call starts. */
  start(
    method: { service: string; method: string; path: string },
    call: unknown,
  ): CallScope | undefined;
}

/** Options for {@link GrpcServerMetrics.instrument}. */
export interface InstrumentOptions {
  /** More per-call hooks (e.g. tracing). */
  hooks?: readonly CallHook[];
  /** Methods left untouched by name (e.g. a long-lived stream measured elsewhere). */
  skip?: readonly string[];
}

/**
 * gRPC server metrics: calls handled and their duration by service, method and status code.
 * Streaming calls count once when they end.
 */
export class GrpcServerMetrics {
  #handled: Counter<"service" | "method" | "code">;
  #seconds: Histogram<"service" | "method" | "code">;
  #started: Counter<"service" | "method">;

  constructor(registry: Registry) {
    const registers = [registry];
    this.#started = new Counter({
      name: "aetherflow_grpc_server_started_total",
      help: "gRPC calls started on the server, by service and method.",
      labelNames: ["service", "method"],
      registers,
    });
    this.#handled = new Counter({
      name: "aetherflow_grpc_server_handled_total",
      help: "gRPC calls completed on the server, by service, method and status code.",
      labelNames: ["service", "method", "code"],
      registers,
    });
    this.#seconds = new Histogram({
      name: "aetherflow_grpc_server_handling_seconds",
      help: "Time from the start of a gRPC call on the server to its status, seconds.",
      labelNames: ["service", "method", "code"],
      buckets: [...LATENCY_BUCKETS],
      registers,
    });
  }

  /** Record one finished call (for handlers not wrapped by {@link instrument}). */
  record(
    labels: { service: string; method: string },
    code: number,
    seconds: number,
  ): void {
    const full = { ...labels, code: grpcCodeName(code) };
    this.#handled.inc(full);
    this.#seconds.observe(full, seconds);
  }

  /**
   * Wrap every handler of a grpc-js handler table so each call is counted and timed (and
   * passed through `options.hooks`). Unary and client-streaming calls end at their callback;
   * server-streaming and bidirectional calls at `finish` (OK), `error` or `cancelled`.
   * @throws {TypeError} when a handler has no method in `definition`
   */
  instrument<H extends object>(
    definition: Record<string, MethodDefinition>,
    handlers: H,
    options: InstrumentOptions = {},
  ): H {
    const out: Record<string, unknown> = {};
    const skip = new Set(options.skip ?? []);
    const hooks = options.hooks ?? [];
    for (const [name, handler] of Object.entries(handlers)) {
      const method = definition[name];
      if (method === undefined) throw new TypeError(`Unknown gRPC method: ${name}`);
      if (skip.has(name) || typeof handler !== "function") {
        out[name] = handler;
        continue;
      }
      const [service, methodName] = splitPath(method.path);
      const labels = { service, method: methodName };
      const begin = (call: unknown) => {
        this.#started.inc(labels);
        const started = performance.now();
        const scopes = hooks.map((hook) => hook.start({ ...labels, path: method.path }, call));
        let done = false;
        const end = (code: number, error?: unknown) => {
          if (done) return;
          done = true;
          this.record(labels, code, (performance.now() - started) / 1000);
          for (const scope of scopes) scope?.end(code, error);
        };
        const run = <T>(fn: () => T): T =>
          scopes.reduce<() => T>(
            (inner, scope) => scope?.run ? () => scope.run!(inner) : inner,
            fn,
          )();
        return { end, run };
      };
      const fn = handler as AnyHandler;
      if (!method.responseStream) {
        // Unary and client streaming: (call, callback).
        out[name] = (call: unknown, callback: AnyHandler) => {
          const { end, run } = begin(call);
          return run(() =>
            fn(call, (error: { code?: number } | null, ...rest: unknown[]) => {
              end(error ? error.code ?? StatusCode.UNKNOWN : StatusCode.OK, error ?? undefined);
              return callback(error, ...rest);
            })
          );
        };
      } else {
        out[name] = (call: ServerCall) => {
          const { end, run } = begin(call);
          call.on("finish", () => end(StatusCode.OK));
          call.on("error", (error) => {
            end((error as { code?: number })?.code ?? StatusCode.UNKNOWN, error);
          });
          call.on("cancelled", () => end(StatusCode.CANCELLED));
          return run(() => fn(call));
        };
      }
    }
    return out as H;
  }
}

/**
 * gRPC client metrics: calls made and their duration by service, method and status code.
 * @example
 * ```ts
 * const client = new GrpcClientMetrics(registry);
 * const started = performance.now();
 * // ... the call ...
 * client.record({ service: "aetherflow.session.v1.SessionService", method: "GetSession" },
 *   0, (performance.now() - started) / 1000);
 * ```
 */
export class GrpcClientMetrics {
  #handled: Counter<"service" | "method" | "code">;
  #seconds: Histogram<"service" | "method" | "code">;

  constructor(registry: Registry) {
    const registers = [registry];
    this.#handled = new Counter({
      name: "aetherflow_grpc_client_handled_total",
      help: "gRPC calls completed by this process as a client, by service, method and code.",
      labelNames: ["service", "method", "code"],
      registers,
    });
    this.#seconds = new Histogram({
      name: "aetherflow_grpc_client_handling_seconds",
      help: "Duration of gRPC calls made by this process, seconds.",
      labelNames: ["service", "method", "code"],
      buckets: [...LATENCY_BUCKETS],
      registers,
    });
  }

  /** Record one finished call. */
  record(labels: { service: string; method: string }, code: number, seconds: number): void {
    const full = { ...labels, code: grpcCodeName(code) };
    this.#handled.inc(full);
    this.#seconds.observe(full, seconds);
  }

  /**
   * Time `call` and record it under `labels`; the code comes from the rejection's `code`
   * (a grpc-js ServiceError or an AppError), OK when it resolves.
   */
  async measure<T>(
    labels: { service: string; method: string },
    call: () => Promise<T>,
  ): Promise<T> {
    const started = performance.now();
    try {
      const result = await call();
      this.record(labels, StatusCode.OK, (performance.now() - started) / 1000);
      return result;
    } catch (error) {
      const code = (error as { code?: unknown })?.code;
      this.record(
        labels,
        typeof code === "number" ? code : StatusCode.UNKNOWN,
        (performance.now() - started) / 1000,
      );
      throw error;
    }
  }
}

/** Options for {@link serveMetrics}. */
export interface ServeMetricsOptions {
  /** Port (0 = any free port). */
  port: number;
  /** Interface (default 127.0.0.1). */
  hostname?: string;
  /** Answer for `/health`: true = 200 `{"status":"ok"}`, false = 503 (default: always ok). */
  healthy?: () => boolean;
}

/** A running metrics endpoint. */
export interface MetricsEndpoint extends AsyncDisposable {
  /** The bound port. */
  readonly port: number;
  /** Stop serving. */
  close(): Promise<void>;
}

/**
 * Serve `GET /metrics` (Prometheus text format) and `GET /health` on a small HTTP port.
 * @example
 * ```ts
 * await using endpoint = serveMetrics(registry, { port: 0 });
 * await fetch(`http://127.0.0.1:${endpoint.port}/metrics`);
 * ```
 */
export function serveMetrics(registry: Registry, options: ServeMetricsOptions): MetricsEndpoint {
  const healthy = options.healthy ?? (() => true);
  const server = Deno.serve(
    { port: options.port, hostname: options.hostname ?? "127.0.0.1", onListen: () => {} },
    async (req) => {
      const path = new URL(req.url).pathname;
      if (req.method !== "GET" && req.method !== "HEAD") {
        return new Response("Method not allowed\n", { status: 405, headers: { allow: "GET" } });
      }
      if (path === "/metrics") {
        return new Response(await registry.metrics(), {
          headers: { "content-type": registry.contentType },
        });
      }
      if (path === "/health") {
        const ok = healthy();
        return Response.json({ status: ok ? "ok" : "unavailable" }, { status: ok ? 200 : 503 });
      }
      return new Response("Not found\n", { status: 404 });
    },
  );
  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= server.shutdown();
    return closed;
  };
  return { port: server.addr.port, close, [Symbol.asyncDispose]: close };
}
