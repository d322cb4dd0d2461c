/**
 * Entrypoint of the gateway: `deno run -A gateway/main.ts [--config gateway.yaml]`.
 * Configuration: see `config.ts` (environment `AETHERFLOW_GATEWAY_*` overrides the file).
 * SIGINT/SIGTERM close WebSockets and streams, drain requests and exit 0.
 * @module
 */
import {
  createLogger,
  createMetricsRegistry,
  GrpcClientMetrics,
  loadConfigOrExit,
} from "../kernel/mod.ts";
import { createGateway } from "./app.ts";
import { BreakerRegistry } from "./breaker.ts";
import { assertUsableConfig, GatewayConfigSchema } from "./config.ts";
import { createGrpcBackends, type Tunnel } from "./grpc_backends.ts";
import { serveGateway } from "./serve.ts";
import { UserStore } from "./users.ts";

/** Opens a gRPC channel over Quantum to `hostname:port`. */
type TunnelFactory = (target: { hostname: string; port: number }) => Promise<Tunnel>;

/**
 * quantum's gRPC channel (`connectGrpcOverQuantum` from quantum/mod.ts), when that package
 * exports it.
 * @throws {Error} when it does not (yet): use transport "tcp"
 */
export async function quantumTunnel(target: { hostname: string; port: number }): Promise<Tunnel> {
  const quantum = await import("../quantum/mod.ts") as Record<string, unknown>;
  const start = quantum.connectGrpcOverQuantum as TunnelFactory | undefined;
  if (typeof start !== "function") {
    throw new Error("quantum/mod.ts does not export connectGrpcOverQuantum: use transport tcp");
  }
  return await start(target);
}

if (import.meta.main) {
  const config = await loadConfigOrExit(GatewayConfigSchema, "gateway");
  const logger = createLogger({ service: "gateway", level: config.logLevel });
  try {
    assertUsableConfig(config);
  } catch (error) {
    console.error((error as Error).message);
    Deno.exit(2);
  }
  const users = await UserStore.load(config.auth.usersFile);
  if (users.list().length === 0) {
    logger.warn("No users: add one with `deno task user:add`", { file: config.auth.usersFile });
  }
  const breakers = new BreakerRegistry();
  const metricsRegistry = createMetricsRegistry();
  const grpcMetrics = new GrpcClientMetrics(metricsRegistry);
  let etcd: { close(): void } | undefined;
  let backends;
  if (config.discovery.enabled) {
    // Instances from etcd, balanced with P2C (loaded only when used).
    const { connectEtcd } = await import("../kernel/etcd.ts");
    const { createDiscoveredBackends } = await import("./discovered_backends.ts");
    try {
      const connection = await connectEtcd(config.discovery.etcd);
      etcd = connection;
      backends = await createDiscoveredBackends({
        etcd: connection,
        transport: config.discovery.transport,
        tunnel: quantumTunnel,
        logger,
        metrics: grpcMetrics,
      });
    } catch (error) {
      logger.error("Cannot start service discovery", { error });
      Deno.exit(1);
    }
  } else {
    backends = await createGrpcBackends({
      session: config.session,
      statesync: config.statesync,
      breakers,
      tunnel: quantumTunnel,
      logger,
      metrics: grpcMetrics,
    });
  }
  const gateway = await createGateway({
    config,
    backends,
    users,
    breakers,
    logger,
    metricsRegistry,
  });
  const server = serveGateway(gateway, {
    hostname: config.hostname,
    port: config.port,
    onListen: (addr) =>
      logger.info("Gateway listening", {
        url: `http://${addr.hostname}:${addr.port}`,
        session: config.discovery.enabled
          ? "etcd discovery"
          : `${config.session.transport}://${config.session.address}`,
        statesync: config.discovery.enabled
          ? "etcd discovery"
          : `${config.statesync.transport}://${config.statesync.address}`,
      }),
  });
  let stopping = false;
  const stop = async (signal: Deno.Signal) => {
    if (stopping) return;
    stopping = true;
    logger.info("Shutting down", { signal });
    await server.shutdown();
    await backends.close();
    etcd?.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => void stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => void stop("SIGTERM"));
}
