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
import { join } from "node:path";
import { type Logger, silentLogger } from "../kernel/mod.ts";
import type { Clock } from "./clock.ts";
import type { SessionConfig } from "./config.ts";
import { HealthService } from "./health.ts";
import { KvSessionStore } from "./kv_store.ts";
import { SessionManager } from "./manager.ts";
import { MemorySessionStore } from "./memory_store.ts";
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
  /** The manager, for in-process callers. */
  readonly manager: SessionManager;
  /** The health service (SERVING until shutdown). */
  readonly health: HealthService;
  /** The grpc-js server. */
  readonly server: Server;
  /**
   * Stop accepting calls, let in-flight calls finish (up to `shutdownTimeoutMs`, then cancel
   * them), stop the sweeper and close the store. Idempotent.
   */
  shutdown(): Promise<void>;
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
  if (config.storage === "kv") {
    await Deno.mkdir(config.dataDir, { recursive: true });
    store = await KvSessionStore.open(kvPathFor(config.dataDir), {
      groupCommit: config.groupCommit,
    });
  } else {
    store = new MemorySessionStore();
  }
  const manager = new SessionManager(store, {
    ...(options.clock ? { clock: options.clock } : {}),
    defaultTtlSeconds: config.defaultTtlSeconds,
    maxTtlSeconds: config.maxTtlSeconds,
    maxSessionsPerUser: config.maxSessionsPerUser,
    userLimitPolicy: config.userLimitPolicy,
    metadataLimits: config.metadata,
  });
  const health = new HealthService();
  const server = createSessionServer(manager, { logger, health });
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(
        `${config.host}:${config.port}`,
        ServerCredentials.createInsecure(),
        (error, bound) => (error ? reject(error) : resolve(bound)),
      );
    });
  } catch (error) {
    server.forceShutdown();
    await store.close();
    throw error;
  }
  const sweeper = startSweeper(manager, { intervalMs: config.sweepIntervalMs, logger });
  let closing: Promise<void> | null = null;
  const shutdown = () => {
    closing ??= (async () => {
      health.shutdown();
      await drain(server, config.shutdownTimeoutMs);
      await sweeper.stop();
      await store.close();
      logger.info("Session service stopped");
    })();
    return closing;
  };
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  return {
    address: `${host}:${port}`,
    port,
    manager,
    health,
    server,
    shutdown,
    [Symbol.asyncDispose]: shutdown,
  };
}

/** `tryShutdown` (in-flight calls finish), cancelled by `forceShutdown` after `timeoutMs`. */
function drain(server: Server, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.forceShutdown(), timeoutMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
