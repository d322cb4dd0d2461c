/**
 * The all-in-one entrypoint behind the `aetherflow` binary and bundle: session, statesync
 * and the gateway in ONE process (the gateway reaches the services over loopback gRPC), so
 * a single file or container runs the whole system. `deno task start` does the same with
 * three child processes from source.
 *
 * Usage: `aetherflow [all|session|statesync|gateway]` (default `all`). Every service reads
 * its usual environment overrides (`AETHERFLOW_<SERVICE>_<KEY>`, see deploy/README.md);
 * with `all`, the gateway's backend addresses default to the in-process services (their
 * Quantum port when the gateway's transport to them is `quantum`). In
 * development mode, a missing users file is created with the dev login `dev` /
 * `dev-password` (as `deno task start` does). SIGINT/SIGTERM stop the gateway first, then
 * the services, and exit 0.
 *
 * @example
 * ```ts
 * const system = await startAllInOne({ env: { AETHERFLOW_GATEWAY_PORT: "0" } });
 * console.log(system.gatewayUrl);
 * await system.shutdown();
 * ```
 * @module
 */
import { createLogger, loadConfig, type Logger, silentLogger } from "../kernel/mod.ts";
import {
  assertUsableConfig,
  BreakerRegistry,
  createGateway,
  createGrpcBackends,
  GatewayConfigSchema,
  hashPassword,
  serveGateway,
  UserStore,
} from "../gateway/mod.ts";
import { connectGrpcOverQuantum } from "../quantum/mod.ts";
import { SessionConfigSchema, startSessionService } from "../session/mod.ts";
import { startStateSyncService, StateSyncConfigSchema } from "../statesync/mod.ts";

/** Which part of the system to run. */
export type Role = "all" | "session" | "statesync" | "gateway";

/** The dev login created in development mode when the users file does not exist. */
export const DEV_LOGIN = { username: "dev", password: "dev-password", role: "admin" } as const;

/** Options for {@link startAllInOne}. */
export interface AllInOneOptions {
  /** What to run (default `all`). */
  role?: Role;
  /** Environment with the `AETHERFLOW_*` overrides (default: the process environment). */
  env?: Record<string, string>;
  logger?: Logger;
}

/** A running system (or part of it). */
export interface AllInOne extends AsyncDisposable {
  /** `http://host:port` of the gateway, when it runs. */
  readonly gatewayUrl: string | undefined;
  /** Stop the gateway, then the services. Idempotent. */
  shutdown(): Promise<void>;
}

/**
 * Start the selected services in this process.
 * @throws {ConfigError} for an invalid configuration (from the kernel's loadConfig)
 * @throws {RangeError} for a configuration the gateway refuses (e.g. production mode with the
 *   default JWT secret)
 */
export async function startAllInOne(options: AllInOneOptions = {}): Promise<AllInOne> {
  const role = options.role ?? "all";
  const env = { ...(options.env ?? Deno.env.toObject()) };
  const logger = options.logger ?? silentLogger;
  const stops: (() => Promise<void>)[] = [];
  const shutdown = async () => {
    while (stops.length > 0) await stops.pop()!();
  };
  try {
    if (role === "all" || role === "session") {
      const config = await loadConfig(SessionConfigSchema, { service: "session", env });
      const session = await startSessionService(config, { logger });
      stops.unshift(() => session.shutdown());
      env.AETHERFLOW_GATEWAY_SESSION__ADDRESS ??= loopback(
        env.AETHERFLOW_GATEWAY_SESSION__TRANSPORT === "quantum" && session.quantumPort
          ? session.quantumPort
          : session.port,
      );
      logger.info("Session service listening", { address: session.address });
    }
    if (role === "all" || role === "statesync") {
      const config = await loadConfig(StateSyncConfigSchema, { service: "statesync", env });
      const statesync = await startStateSyncService(config, { logger });
      stops.unshift(() => statesync.shutdown());
      env.AETHERFLOW_GATEWAY_STATESYNC__ADDRESS ??= loopback(
        env.AETHERFLOW_GATEWAY_STATESYNC__TRANSPORT === "quantum" && statesync.quantumPort
          ? statesync.quantumPort
          : statesync.port,
      );
      logger.info("Statesync service listening", { address: statesync.address });
    }
    let gatewayUrl: string | undefined;
    if (role === "all" || role === "gateway") {
      const config = await loadConfig(GatewayConfigSchema, { service: "gateway", env });
      assertUsableConfig(config);
      if (config.mode === "development") await ensureDevLogin(config.auth.usersFile, logger);
      const users = await UserStore.load(config.auth.usersFile);
      const breakers = new BreakerRegistry();
      const backends = await createGrpcBackends({
        session: config.session,
        statesync: config.statesync,
        breakers,
        // transport "quantum": every gRPC connection is its own Quantum connection.
        tunnel: (target) => connectGrpcOverQuantum(target),
        logger,
      });
      stops.push(() => backends.close());
      const gateway = await createGateway({ config, backends, users, breakers, logger });
      const server = serveGateway(gateway, { hostname: config.hostname, port: config.port });
      stops.push(() => server.shutdown());
      gatewayUrl = `http://${server.hostname}:${server.port}`;
      logger.info("Gateway listening", { url: gatewayUrl });
    }
    return { gatewayUrl, shutdown, [Symbol.asyncDispose]: shutdown };
  } catch (error) {
    await shutdown();
    throw error;
  }
}

function loopback(port: number): string {
  return `127.0.0.1:${port}`;
}

/** Create the users file with {@link DEV_LOGIN} unless it exists. */
async function ensureDevLogin(usersFile: string, logger: Logger): Promise<void> {
  try {
    await Deno.stat(usersFile);
    return;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const dir = usersFile.includes("/") ? usersFile.slice(0, usersFile.lastIndexOf("/")) : ".";
  await Deno.mkdir(dir, { recursive: true });
  const user = {
    id: crypto.randomUUID(),
    username: DEV_LOGIN.username,
    role: DEV_LOGIN.role,
    password: await hashPassword(DEV_LOGIN.password),
  };
  await Deno.writeTextFile(usersFile, JSON.stringify({ users: [user] }, null, 2) + "\n", {
    createNew: true,
    mode: 0o600,
  });
  logger.info("Created the dev login", { file: usersFile, username: DEV_LOGIN.username });
}

if (import.meta.main) {
  const arg = Deno.args[0] ?? "all";
  if (!["all", "session", "statesync", "gateway"].includes(arg)) {
    console.error("Usage: aetherflow [all|session|statesync|gateway]");
    Deno.exit(2);
  }
  const logger = createLogger({ service: "aetherflow" });
  let system: AllInOne;
  try {
    system = await startAllInOne({ role: arg as Role, logger });
  } catch (error) {
    console.error((error as Error).message);
    Deno.exit(2);
  }
  let stopping = false;
  const stop = async (signal: Deno.Signal) => {
    if (stopping) return;
    stopping = true;
    logger.info("Shutting down", { signal });
    await system.shutdown();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => void stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => void stop("SIGTERM"));
}
