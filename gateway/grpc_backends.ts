/**
 * The backends over gRPC (generated grpc-js clients): one channel per service reused by
 * every call, deadlines from the request budget, `x-request-id` metadata, jittered
 * exponential retries for idempotent calls only, a circuit breaker per method, and a
 * `transport` per backend — "quantum" dials through a tunnel the caller supplies (e.g.
 * quantum's `connectGrpcOverQuantum`), invisible to everything above.
 * @module
 */
import {
  type ChannelCredentials,
  type Client,
  credentials,
  Metadata,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import {
  AppError,
  goawayGuardedCredentials,
  type GrpcClientMetrics,
  type Logger,
  silentLogger,
} from "../kernel/mod.ts";
import { SessionServiceClient } from "../proto/gen/session.ts";
import {
  StateSyncServiceClient,
  type SubmitBatchResult,
  type SubmitRequest,
} from "../proto/gen/statesync.ts";
import {
  type BackendHealth,
  type Backends,
  type CallOptions,
  IDEMPOTENT_METHODS,
  SESSION_UNARY_METHODS,
  type SessionBackend,
  STATESYNC_UNARY_METHODS,
  type StateSyncBackend,
  type StreamHandlers,
} from "./backends.ts";
import type { BreakerRegistry } from "./breaker.ts";
import { SubscriptionMux } from "./subscription_mux.ts";

/** Where and how to reach one backend. */
export interface BackendTarget {
  /** host:port (TCP gRPC listener, or the Quantum listener for transport "quantum"). */
  address: string;
  transport: "tcp" | "quantum";
  required: boolean;
  /** Retries for idempotent calls. */
  retries: number;
  /** Deadline for calls without a request budget, ms. */
  defaultTimeoutMs: number;
}

/**
 * How the grpc-js client reaches a backend over another transport: an address, and the
 * credentials that carry the channel's bytes (e.g. quantum's `connectGrpcOverQuantum`);
 * without credentials, `address` is a local tunnel endpoint dialed over loopback TCP.
 */
export interface Tunnel {
  /** host:port for the grpc-js client. */
  address: string;
  /** Credentials that drop GOAWAY frames themselves (see kernel/grpc_guard.ts). */
  credentials?: ChannelCredentials;
  close(): Promise<void> | void;
}

/** Options for {@link createGrpcBackends}. */
export interface GrpcBackendsOptions {
  session: BackendTarget;
  statesync: BackendTarget;
  breakers: BreakerRegistry;
  /** Opens a tunnel for transport "quantum" (required when a backend uses it). */
  tunnel?: (target: { hostname: string; port: number }) => Promise<Tunnel>;
  logger?: Logger;
  /** Base backoff before the first retry, ms (default 25). */
  retryBaseMs?: number;
  /** Records every call attempt (`aetherflow_grpc_client_*`). */
  metrics?: GrpcClientMetrics;
  /**
   * Drop the HTTP/2 GOAWAY frames backends send, in the client's connections (default true):
   * works around a Deno 2.9 node:http2 crash on GOAWAY (see kernel/grpc_guard.ts).
   */
  filterGoaway?: boolean;
}

/** Most requests in one SubmitBatch message. */
const MAX_SUBMIT_BATCH = 256;

type UnaryFn = (
  req: unknown,
  metadata: Metadata,
  options: { deadline: Date },
  callback: (error: ServiceError | null, response: unknown) => void,
) => unknown;

/**
 * Connect to session and statesync.
 * @example
 * ```ts
 * const backends = await createGrpcBackends({ session, statesync, breakers: new BreakerRegistry() });
 * await backends.statesync.getStats({});
 * await backends.close();
 * ```
 */
export async function createGrpcBackends(options: GrpcBackendsOptions): Promise<Backends> {
  const log = options.logger ?? silentLogger;
  const tunnels: Tunnel[] = [];
  const resolve = async (
    target: BackendTarget,
  ): Promise<{ address: string; credentials: ChannelCredentials }> => {
    const guarded = options.filterGoaway === false
      ? credentials.createInsecure()
      : goawayGuardedCredentials();
    if (target.transport === "tcp") return { address: target.address, credentials: guarded };
    if (options.tunnel === undefined) {
      throw new RangeError(`transport "quantum" for ${target.address} needs a tunnel factory`);
    }
    const tunnel = await options.tunnel(splitAddress(target.address));
    tunnels.push(tunnel);
    return { address: tunnel.address, credentials: tunnel.credentials ?? guarded };
  };
  const channelOptions = {
    "grpc.keepalive_time_ms": 30_000,
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
    // Reconnect quickly after a backend restart (the breaker test depends on it).
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1_000,
  };
  const sessionTarget = await resolve(options.session);
  const statesyncTarget = await resolve(options.statesync);
  const sessionClient = new SessionServiceClient(
    sessionTarget.address,
    sessionTarget.credentials,
    channelOptions,
  );
  const statesyncClient = new StateSyncServiceClient(
    statesyncTarget.address,
    statesyncTarget.credentials,
    channelOptions,
  );
  const retryBaseMs = options.retryBaseMs ?? 25;

  const SERVICE_NAMES: Record<string, string> = {
    session: "aetherflow.session.v1.SessionService",
    statesync: "aetherflow.statesync.v1.StateSyncService",
  };

  function caller(service: string, client: Client, target: BackendTarget) {
    return async function call<T>(
      method: string,
      req: unknown,
      opts: CallOptions = {},
    ): Promise<T> {
      const fn = (client as unknown as Record<string, UnaryFn>)[method]!.bind(client);
      const deadline = opts.deadline ?? Date.now() + target.defaultTimeoutMs;
      const attempts = IDEMPOTENT_METHODS.has(method) ? target.retries + 1 : 1;
      const name = `${service}/${method[0]!.toUpperCase()}${method.slice(1)}`;
      for (let attempt = 1;; attempt++) {
        if (Date.now() >= deadline) {
          throw new AppError("DEADLINE_EXCEEDED", `Deadline exceeded before calling ${name}`);
        }
        try {
          const attemptCall = () =>
            new Promise<T>((resolve, reject) => {
              const metadata = new Metadata();
              if (opts.requestId) metadata.set("x-request-id", opts.requestId);
              if (opts.traceparent) metadata.set("traceparent", opts.traceparent);
              fn(req, metadata, { deadline: new Date(deadline) }, (error, response) => {
                if (error) reject(AppError.from(error));
                else resolve(response as T);
              });
            });
          const labels = {
            service: SERVICE_NAMES[service] ?? service,
            method: name.split("/")[1]!,
          };
          const measured = options.metrics
            ? () => options.metrics!.measure(labels, attemptCall)
            : attemptCall;
          return await options.breakers.run(name, measured);
        } catch (error) {
          const appError = AppError.from(error);
          const rejectedByBreaker = (appError.details as { breaker?: string } | null)?.breaker;
          if (attempt >= attempts || appError.status !== "UNAVAILABLE" || rejectedByBreaker) {
            throw appError;
          }
          const delay = Math.random() * retryBaseMs * 2 ** (attempt - 1); // full jitter
          if (Date.now() + delay >= deadline) throw appError;
          log.debug("Retrying idempotent call", { method: name, attempt, delay_ms: delay });
          await new Promise((resolve) => setTimeout(resolve, delay));
        }
      }
    };
  }

  const sessionCall = caller("session", sessionClient, options.session);
  const statesyncCall = caller("statesync", statesyncClient, options.statesync);
  const unary =
    <T>(call: typeof sessionCall, method: string) => (req: unknown, opts?: CallOptions) =>
      call<T>(method, req, opts);

  const session = Object.fromEntries(
    SESSION_UNARY_METHODS.map((method) => [method, unary(sessionCall, method)]),
  ) as unknown as SessionBackend;

  const statesyncUnary = Object.fromEntries(
    STATESYNC_UNARY_METHODS.map((method) => [method, unary(statesyncCall, method)]),
  );
  const subscriptions = new SubscriptionMux(() => statesyncClient.subscribeDocuments());
  let legacySubscriptions = false;
  const subscribeOne: StateSyncBackend["subscribeDocument"] = (req, handlers) => {
    const stream = statesyncClient.subscribeDocument(req);
    let cancelled = false;
    wireStream(stream, handlers, () => cancelled);
    return {
      cancel() {
        cancelled = true;
        stream.cancel();
      },
    };
  };
  const statesync: StateSyncBackend = {
    ...(statesyncUnary as unknown as Omit<
      StateSyncBackend,
      "subscribeDocument" | "submitOperations"
    >),
    // Every document subscription shares one SubscribeDocuments stream: the events statesync
    // produces together for all of them arrive in one message (see subscription_mux.ts). A
    // statesync that predates it (UNIMPLEMENTED, e.g. during a rolling upgrade) gets one
    // SubscribeDocument stream per document instead.
    subscribeDocument(req, handlers) {
      if (legacySubscriptions) return subscribeOne(req, handlers);
      let current = subscriptions.subscribe(req, {
        ...handlers,
        onError: (error) => {
          if (AppError.from(error).status !== "UNIMPLEMENTED") return handlers.onError(error);
          legacySubscriptions = true;
          current = subscribeOne(req, handlers);
        },
      });
      return { cancel: () => current.cancel() };
    },
    // Carried by SubmitOperationBatches: requests sent in the same event-loop turn share one
    // message (one HTTP/2 frame, one decode per side), cheaper per op under load. The flush
    // runs from setImmediate, after the turn's other I/O callbacks, so a busy gateway still
    // batches (e2e benchmark: ~2.2 ops per message at 1,000 ops/s, ~4 at 1,500, ~9 at 2,000)
    // while no op waits for a timer: a 0 ms timer gathered a little more (~2.5-3.9 and ~6) but
    // Deno fires it only after 1-2 ms, added to every op's latency. A batch of
    // MAX_SUBMIT_BATCH goes at once. Results come back one message per batch, in order.
    submitOperations(handlers) {
      const stream = statesyncClient.submitOperationBatches();
      let cancelled = false;
      let queued: SubmitRequest[] = [];
      let flushScheduled = false;
      const flush = () => {
        flushScheduled = false;
        if (cancelled || queued.length === 0) return;
        const requests = queued;
        queued = [];
        stream.write({ requests });
      };
      wireStream<SubmitBatchResult>(stream, {
        onData: (batch) => {
          for (const result of batch.results) {
            if (cancelled) return;
            handlers.onData(result);
          }
        },
        onError: (error) => handlers.onError(error),
        onEnd: () => handlers.onEnd(),
      }, () => cancelled);
      return {
        send(req) {
          queued.push(req);
          if (queued.length >= MAX_SUBMIT_BATCH) {
            flush(); // a full batch goes at once: bounded message size
          } else if (!flushScheduled) {
            flushScheduled = true;
            setImmediate(flush);
          }
        },
        cancel() {
          cancelled = true;
          stream.end();
          stream.cancel();
        },
      };
    },
  };

  const targets: Array<[string, Client, BackendTarget, string]> = [
    ["session", sessionClient, options.session, sessionTarget.address],
    ["statesync", statesyncClient, options.statesync, statesyncTarget.address],
  ];

  return {
    session,
    statesync,
    async health(timeoutMs = 1_000) {
      const entries = await Promise.all(targets.map(async ([name, client, target]) => {
        const started = performance.now();
        const result = await checkHealth(client, Date.now() + timeoutMs);
        const health: BackendHealth = {
          status: result.status,
          required: target.required,
          transport: target.transport,
          address: target.address,
          latencyMs: Math.round((performance.now() - started) * 100) / 100,
        };
        if (result.error) health.error = result.error;
        return [name, health] as const;
      }));
      return Object.fromEntries(entries);
    },
    async close() {
      subscriptions.close();
      sessionClient.close();
      statesyncClient.close();
      for (const tunnel of tunnels.reverse()) await tunnel.close();
    },
  };
}

function wireStream<T>(
  stream: {
    on(event: "data", fn: (m: T) => void): unknown;
    on(event: "error", fn: (e: Error) => void): unknown;
    on(event: "end", fn: () => void): unknown;
  },
  handlers: StreamHandlers<T>,
  cancelled: () => boolean,
): void {
  let ended = false;
  stream.on("data", (message: T) => {
    if (!cancelled()) handlers.onData(message);
  });
  stream.on("error", (error: Error) => {
    if (ended) return;
    ended = true;
    if (!cancelled()) handlers.onError(AppError.from(error));
  });
  stream.on("end", () => {
    if (ended) return;
    ended = true;
    if (!cancelled()) handlers.onEnd();
  });
}

/** `host:port` (IPv6 in brackets) into parts. */
export function splitAddress(address: string): { hostname: string; port: number } {
  const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(address);
  if (!match) throw new TypeError(`Invalid address "${address}": expected host:port`);
  return { hostname: match[1]!, port: Number(match[2]) };
}

const SERVING_STATUS = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"] as const;

/**
 * Standard gRPC health check (grpc.health.v1.Health/Check, hand-encoded: one string field
 * in, one enum field out). A server without the health service answers UNIMPLEMENTED,
 * which still proves it is up and speaking gRPC, so it counts as SERVING.
 */
function checkHealth(
  client: Client,
  deadline: number,
): Promise<{ status: BackendHealth["status"]; error?: string }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      () => Buffer.from(new BinaryWriter().finish()), // empty service name = overall health
      (bytes: Buffer) => {
        const reader = new BinaryReader(bytes);
        let value = 0;
        while (reader.pos < reader.len) {
          const [field, wire] = reader.tag();
          if (field === 1) value = reader.int32();
          else reader.skip(wire);
        }
        return SERVING_STATUS[value] ?? "UNKNOWN";
      },
      {},
      new Metadata(),
      { deadline: new Date(deadline) },
      (error: ServiceError | null, response?: string) => {
        if (error === null) {
          resolve({ status: response === "SERVING" ? "SERVING" : "NOT_SERVING" });
        } else if (error.code === status.UNIMPLEMENTED) {
          resolve({ status: "SERVING" });
        } else {
          resolve({ status: "UNREACHABLE", error: error.details || error.message });
        }
      },
    );
  });
}
