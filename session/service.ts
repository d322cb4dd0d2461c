/**
 * The whole session service in one call: store, manager, sweeper, gRPC server with health,
 * bound on TCP (and Quantum when configured), with graceful shutdown. `main.ts` wraps it for
 * the command line; an all-in-one start can call it directly.
 *
 * @example
 * ```ts
 * const config = SessionConfigSchema.parse({ port: 0, storage: "memory" });
 * await using service = await startSessionService(config);
 * console.log(service.address); // "127.0.0.1:41234"
 * ```
 * @module
 */
import { type Server, ServerCredentials } from "@grpc/grpc-js";
import { connectionToDuplex, listen as listenQuantum } from "../quantum/mod.ts";
import { join } from "node:path";
import {
  CallGate,
  type Clock,
  createMetricsRegistry,
  drainCalls,
  type GuardedListener,
  guardIncomingGoaway,
  HealthState,
  listenGuarded,
  type Logger,
  type MetricsEndpoint,
  serveMetrics,
  silentLogger,
} from "../kernel/mod.ts";
import type { SessionConfig } from "./config.ts";
import type { EtcdSessions } from "./etcd_mode.ts";
import { KvSessionStore } from "./kv_store.ts";
import { SessionManager } from "./manager.ts";
import { MemorySessionStore } from "./memory_store.ts";
import { MeteredSessionManager, SessionMetrics } from "./metrics.ts";
import { createSessionServer } from "./server.ts";
import type { SessionStore } from "./store.ts";
import { startSweeper } from "./sweeper.ts";

/** Options for {@link startSessionService}. */
export interface StartSessionServiceOptions {
  /** Logger (default: silent). */
  logger?: Logger;
  /** Clock for the manager (default: the system clock). */
  clock?: Clock;
}

/** A running session service. */
export interface SessionServiceHandle extends AsyncDisposable {
  /** `host:port` of the TCP listener. */
  readonly address: string;
  /** The bound TCP port (useful with `port: 0`). */
  readonly port: number;
  /** The bound Quantum (UDP) port, or null when `quantumPort` is 0 (off). */
  readonly quantumPort: number | null;
  /** The manager, for in-process callers. */
  readonly manager: SessionManager;
  /** The health service (SERVING until shutdown). */
  readonly health: HealthState;
  /** The grpc-js server. */
  readonly server: Server;
  /** The service's metrics (served on `metricsPort` when that is set). */
  readonly metrics: SessionMetrics;
  /** The bound port of the `/metrics` + `/health` endpoint, or null when off. */
  readonly metricsPort: number | null;
  /**
   * Drain and stop: health NOT_SERVING, refuse new calls with UNAVAILABLE,
   * wait for calls in flight (up to `shutdownTimeoutMs`), stop the sweeper, close the store.
   * Then, unless `releaseTransport` is false, `forceShutdown()` the grpc-js server to free its
   * sockets in this process. The entrypoint passes false and exits instead, so clients never
   * receive an HTTP/2 GOAWAY (see `kernel/call_gate.ts`: a GOAWAY can crash a Deno client).
   * Idempotent.
   */
  shutdown(options?: { releaseTransport?: boolean }): Promise<void>;
}

/** The KV file used under a data directory. */
export function kvPathFor(dataDir: string): string {
  return join(dataDir, "session.kv");
}

/**
 * Start the session service described by `config`.
 * @throws {Error} when the port cannot be bound or the data directory cannot be used
 */
export async function startSessionService(
  config: SessionConfig,
  options: StartSessionServiceOptions = {},
): Promise<SessionServiceHandle> {
  const logger = options.logger ?? silentLogger;
  let store: SessionStore;
  // storage "etcd": shared store with leases, and discovery registration (loaded only when used).
  let etcdSessions: EtcdSessions | undefined;
  if (config.storage === "kv") {
    await Deno.mkdir(config.dataDir, { recursive: true });
    store = await KvSessionStore.open(kvPathFor(config.dataDir), {
      groupCommit: config.groupCommit,
    });
  } else if (config.storage === "etcd") {
    const { openEtcdSessions } = await import("./etcd_mode.ts");
    etcdSessions = await openEtcdSessions(config.etcd, { logger });
    store = etcdSessions.store;
  } else {
    store = new MemorySessionStore();
  }
  const metrics = new SessionMetrics(createMetricsRegistry());
  const manager = new MeteredSessionManager(store, metrics, {
    ...(options.clock ? { clock: options.clock } : {}),
    defaultTtlSeconds: config.defaultTtlSeconds,
    maxTtlSeconds: config.maxTtlSeconds,
    maxSessionsPerUser: config.maxSessionsPerUser,
    userLimitPolicy: config.userLimitPolicy,
    metadataLimits: config.metadata,
  });
  metrics.observe(manager);
  const health = new HealthState();
  const gate = new CallGate();
  const server = createSessionServer(manager, {
    logger,
    health,
    gate,
    grpcMetrics: metrics.grpc,
  });
  let metricsEndpoint: MetricsEndpoint | undefined;
  if (config.metricsPort > 0) {
    try {
      metricsEndpoint = serveMetrics(metrics.registry, {
        hostname: config.host,
        port: config.metricsPort,
        healthy: () => closing === null,
      });
    } catch (error) {
      await store.close();
      throw error;
    }
  }
  let listener: GuardedListener;
  try {
    listener = await listenGuarded(server, { hostname: config.host, port: config.port });
  } catch (error) {
    server.forceShutdown();
    await store.close();
    throw error;
  }
  const port = listener.port;
  let quantum: QuantumService | null = null;
  try {
    if (config.quantumPort > 0) quantum = serveQuantum(server, config, metrics);
  } catch (error) {
    await listener.close();
    server.forceShutdown();
    await store.close();
    await metricsEndpoint?.close();
    throw error;
  }
  const sweeper = startSweeper(manager, { intervalMs: config.sweepIntervalMs, logger });
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  let closing: Promise<void> | null = null;
  // Closing the etcd store also removes this registration.
  const registered = etcdSessions?.register({
    tcp: `${host}:${port}`,
    quantum: quantum ? `${host}:${quantum.port}` : "",
  });
  const shutdown = async (shutdownOptions: { releaseTransport?: boolean } = {}) => {
    closing ??= (async () => {
      health.shutdown();
      // Stop accepting; open connections stay (grpc-js unbind() would send them GOAWAY).
      await listener.close();
      const drained = await drainCalls(gate, {
        timeoutMs: config.shutdownTimeoutMs,
        lingerMs: config.shutdownLingerMs,
      });
      if (!drained) {
        logger.warn("Shutdown timeout: calls still in flight", { in_flight: gate.inFlight });
      }
      // Quantum connections end with RST here (never a GOAWAY); their calls are finished.
      await quantum?.close();
      await sweeper.stop();
      await store.close();
      await metricsEndpoint?.close();
      logger.info("Session service stopped");
    })();
    await closing;
    if (shutdownOptions.releaseTransport !== false) server.forceShutdown();
  };
  try {
    await registered;
  } catch (error) {
    await shutdown();
    throw error;
  }
  return {
    address: `${host}:${port}`,
    port,
    quantumPort: quantum?.port ?? null,
    manager,
    health,
    server,
    metrics,
    metricsPort: metricsEndpoint?.port ?? null,
    shutdown,
    [Symbol.asyncDispose]: () => shutdown(),
  };
}

/** The Quantum listener feeding the gRPC server. */
interface QuantumService {
  /** The bound UDP port. */
  port: number;
  /** Reset every Quantum connection and close the socket. */
  close(): Promise<void>;
}

/** Accept Quantum connections (measured on the session registry) and inject each, GOAWAY-guarded, into `server`. */
function serveQuantum(
  server: Server,
  config: SessionConfig,
  metrics: SessionMetrics,
): QuantumService {
  const listener = metrics.observeQuantum(
    listenQuantum({ hostname: config.host, port: config.quantumPort }),
  );
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  const accepting = (async () => {
    for await (const conn of listener) {
      injector.injectConnection(guardIncomingGoaway(connectionToDuplex(conn)));
    }
  })();
  return {
    port: listener.addr.port,
    async close() {
      await listener.close();
      await accepting;
    },
  };
}
