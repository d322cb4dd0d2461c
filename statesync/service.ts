/**
 * The whole statesync service in one call: store, document engine, event hub, locks,
 * presence, gRPC server with health on TCP (and Quantum when configured), and graceful
 * shutdown. `main.ts` wraps it for the command line; an all-in-one start can call it directly.
 *
 * @example
 * ```ts
 * const config = StateSyncConfigSchema.parse({ port: 0, storage: "memory" });
 * await using service = await startStateSyncService(config);
 * console.log(service.address); // "127.0.0.1:41234"
 * ```
 * @module
 */
import { join } from "node:path";
import type { Server } from "@grpc/grpc-js";
import {
  type Clock,
  createMetricsRegistry,
  type Logger,
  type MetricsEndpoint,
  type Registry,
  serveMetrics,
  silentLogger,
} from "../kernel/mod.ts";
import type { StateSyncConfig } from "./config.ts";
import { DocumentManager } from "./documents.ts";
import type { DocumentStore } from "./store.ts";
import { KvDocumentStore } from "./store_kv.ts";
import { MemoryDocumentStore } from "./store_memory.ts";
import { EventHub } from "./hub.ts";
import { LockManager } from "./locks.ts";
import type { LockService } from "./lock_etcd.ts";
import type { EtcdStateSync } from "./etcd_mode.ts";
import { PresenceManager } from "./presence.ts";
import { type RunningServer, startStateSyncServer, StateSyncService } from "./server.ts";
import { StateSyncMetrics } from "./metrics.ts";
import type { QuantumMetrics } from "../quantum/mod.ts";
import { TracedDocumentStore } from "./_traced_store.ts";

/** Options for {@link startStateSyncService}. */
export interface StartStateSyncOptions {
  /** Logger (default: silent). */
  logger?: Logger;
  /** Epoch-ms clock for the engine, locks and presence (default: the wall clock). */
  clock?: Clock;
}

/** A running statesync service. */
export interface StateSyncHandle extends AsyncDisposable {
  /** `host:port` of the TCP listener. */
  readonly address: string;
  /** The bound TCP port (useful with `port: 0`). */
  readonly port: number;
  /** The Quantum (UDP) port serving the same gRPC service, or null when off. */
  readonly quantumPort: number | null;
  /** In-process access for callers in the same process and tests. */
  readonly documents: DocumentManager;
  readonly hub: EventHub;
  readonly locks: LockService;
  readonly presence: PresenceManager;
  readonly service: StateSyncService;
  /** The grpc-js server. */
  readonly server: Server;
  /** The service's metrics (served on `metricsPort` when that is set). */
  readonly metrics: StateSyncMetrics;
  /** The bound port of the `/metrics` + `/health` endpoint, or null when off. */
  readonly metricsPort: number | null;
  /**
   * Stop accepting, report NOT_SERVING, refuse new calls (UNAVAILABLE), end subscription
   * streams (UNAVAILABLE) and submit streams (after their in-flight requests), wait for calls
   * in flight (up to `shutdownTimeoutMs`), close locks, presence and the store — without
   * sending an HTTP/2 GOAWAY (see `kernel/call_gate.ts`). The transport is released
   * (remaining calls cancelled) unless `options.releaseTransport` is false, for a process
   * about to exit. Idempotent.
   */
  shutdown(options?: { releaseTransport?: boolean }): Promise<void>;
}

/** The KV file used under a data directory. */
export function kvPathFor(dataDir: string): string {
  return join(dataDir, "statesync.kv");
}

/**
 * Start the statesync service described by `config`.
 * @throws {Error} when the port cannot be bound or the data directory cannot be used
 */
export async function startStateSyncService(
  config: StateSyncConfig,
  options: StartStateSyncOptions = {},
): Promise<StateSyncHandle> {
  const logger = options.logger ?? silentLogger;
  const clock = options.clock;
  const hub = new EventHub({
    maxQueueEvents: config.subscriber.maxQueueEvents,
    maxQueueBytes: config.subscriber.maxQueueBytes,
    maxCatchUp: Math.max(1, config.subscriber.maxCatchUp),
    maxSubscribersPerDocument: config.subscriber.maxPerDocument,
    ...(clock ? { clock } : {}),
  });
  const versionOf = (documentId: string) => hub.versionOf(documentId);
  let store: DocumentStore;
  // storage "etcd": shared store, locks and event fan-out (loaded only when used).
  let distributed: EtcdStateSync | undefined;
  if (config.storage === "kv") {
    await Deno.mkdir(config.dataDir, { recursive: true });
    store = await KvDocumentStore.open(kvPathFor(config.dataDir));
  } else if (config.storage === "etcd") {
    const { openEtcdStateSync } = await import("./etcd_mode.ts");
    distributed = await openEtcdStateSync(config.etcd, hub, {
      locks: { ...config.locks, ...(clock ? { clock } : {}) },
      versionOf,
      logger,
    });
    store = distributed.store;
  } else {
    store = new MemoryDocumentStore();
  }
  store = new TracedDocumentStore(store, config.storage === "kv" ? "deno-kv" : config.storage);
  const events = distributed?.events ?? hub;
  const locks: LockService = distributed?.locks ?? new LockManager({
    events: hub,
    versionOf,
    ...config.locks,
    ...(clock ? { clock } : {}),
  });
  const presence = new PresenceManager({
    events,
    versionOf,
    ...config.presence,
    maxTtlMs: Math.max(600_000, config.presence.defaultTtlMs),
    ...(clock ? { clock } : {}),
    ...(distributed ? { remote: distributed.presence } : {}),
  });
  const documents = new DocumentManager(store, {
    events,
    locks,
    sharedStore: distributed !== undefined,
    limits: config.limits,
    snapshotEvery: config.snapshotEvery,
    ...(clock ? { clock } : {}),
  });
  distributed?.follow(documents);
  const metrics = new StateSyncMetrics(createMetricsRegistry(), {
    documents,
    hub,
    locks,
    presence,
  });
  const service = new StateSyncService({
    applyObserver: metrics,
    documents,
    hub,
    locks,
    presence,
    logger,
    maxInFlightPerStream: config.maxInFlightPerStream,
  });
  let running: RunningServer;
  try {
    running = await startStateSyncServer(service, {
      hostname: config.host,
      port: config.port,
      grpcMetrics: metrics.grpc,
    });
  } catch (error) {
    await documents.close();
    await locks.close();
    presence.close();
    await distributed?.close();
    throw error;
  }
  let quantum: QuantumEndpoint | undefined;
  if (config.quantumPort > 0) {
    try {
      quantum = await serveOverQuantum(running.server, config.host, config.quantumPort, {
        registry: metrics.registry,
      });
    } catch (error) {
      await running.close(0);
      await documents.close();
      await locks.close();
      presence.close();
      await distributed?.close();
      throw error;
    }
  }
  let closing: Promise<void> | null = null;
  let metricsEndpoint: MetricsEndpoint | undefined;
  if (config.metricsPort > 0) {
    try {
      metricsEndpoint = serveMetrics(metrics.registry, {
        hostname: config.host,
        port: config.metricsPort,
        healthy: () => closing === null,
      });
    } catch (error) {
      await quantum?.close();
      await running.close(0);
      await documents.close();
      await locks.close();
      presence.close();
      await distributed?.close();
      throw error;
    }
  }
  const shutdown = (options: { releaseTransport?: boolean } = {}) => {
    closing ??= (async () => {
      await quantum?.close();
      await running.close(config.shutdownTimeoutMs, options);
      await locks.close();
      presence.close();
      await documents.close();
      await distributed?.close();
      await metricsEndpoint?.close();
      logger.info("Statesync service stopped");
    })();
    return closing;
  };
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  if (distributed !== undefined) {
    try {
      await distributed.register({
        tcp: `${host}:${running.port}`,
        quantum: quantum ? `${host}:${quantum.port}` : "",
      });
    } catch (error) {
      await shutdown();
      throw error;
    }
  }
  return {
    address: `${host}:${running.port}`,
    port: running.port,
    quantumPort: quantum?.port ?? null,
    documents,
    hub,
    locks,
    presence,
    service,
    server: running.server,
    metrics,
    metricsPort: metricsEndpoint?.port ?? null,
    shutdown,
    [Symbol.asyncDispose]: () => shutdown(),
  };
}

/** A Quantum listener carrying the gRPC server. */
interface QuantumEndpoint {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Serve `server` over Quantum too, through quantum/mod.ts's `listen` and
 * `serveGrpcOverQuantum(server, listener)` (looked up at run time: the Quantum gRPC bridge is
 * built separately).
 * @throws {Error} when quantum/mod.ts does not provide them (set quantumPort to 0)
 */
async function serveOverQuantum(
  server: Server,
  hostname: string,
  port: number,
  options: { registry: Registry },
): Promise<QuantumEndpoint> {
  const quantum = await import("../quantum/mod.ts") as Record<string, unknown>;
  const listen = quantum.listen as
    | ((options: { hostname: string; port: number }) => {
      readonly addr: Deno.NetAddr;
      close(): Promise<void>;
    })
    | undefined;
  const serve = quantum.serveGrpcOverQuantum as
    | ((server: Server, listener: unknown) => unknown)
    | undefined;
  if (typeof listen !== "function" || typeof serve !== "function") {
    throw new Error(
      "quantumPort is set but quantum/mod.ts does not export listen and serveGrpcOverQuantum: " +
        "set quantumPort to 0 (gRPC over TCP only)",
    );
  }
  // Measured on the service's registry: the bridge accepts through the metrics' wrapper.
  const Metrics = quantum.QuantumMetrics as typeof QuantumMetrics;
  const listener = new Metrics(options.registry).observeListener(
    "statesync",
    listen({ hostname, port }) as Parameters<QuantumMetrics["observeListener"]>[1],
  );
  const bridge = await serve(server, listener) as { close?: () => unknown } | undefined;
  return {
    port: listener.addr.port,
    async close() {
      await bridge?.close?.();
      await listener.close();
    },
  };
}
