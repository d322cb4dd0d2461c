/**
 * One-command start (`deno task start`): session, statesync and gateway as three child
 * processes with their own entrypoints, storage in Deno KV under `./data`, gateway on :8080,
 * gateway → services over gRPC-over-Quantum when quantum provides its tunnel (else TCP).
 * Prints the URLs and the dev login; Ctrl-C stops the gateway first, then the services, each
 * with SIGTERM so they drain and close their stores.
 *
 * Flags: `--port 8080`, `--data ./data`, `--transport quantum|tcp`.
 * `startStack()` is the same launcher as a library (used by the end-to-end tests).
 * @module
 */
import { parseArgs } from "node:util";
import { addUser } from "./user_add.ts";
import { UserStore } from "./users.ts";

/** The services the launcher runs. */
export type ServiceName = "session" | "statesync" | "gateway";

/** Options for {@link startStack}. */
export interface StackOptions {
  /** Data directory (KV files and the users file). */
  dataDir: string;
  gatewayPort: number;
  sessionPort: number;
  statesyncPort: number;
  /** gateway → services transport. */
  transport: "tcp" | "quantum";
  /** Per-service override of `transport`. */
  transports?: Partial<Record<"session" | "statesync", "tcp" | "quantum">>;
  /** UDP ports of the services' Quantum listeners (transport "quantum"). */
  sessionQuantumPort?: number;
  statesyncQuantumPort?: number;
  /**
   * Addresses the gateway dials instead of the services' own (e.g. an impairment relay in
   * front of them). Default: the services' TCP or Quantum address.
   */
  dialSession?: string;
  dialStatesync?: string;
  /** Ports of the services' Prometheus `/metrics` endpoints (default 0: off). */
  sessionMetricsPort?: number;
  statesyncMetricsPort?: number;
  /** Forward children's logs to this process's stderr (default true). */
  logs?: boolean;
  /** Extra environment for every child. */
  env?: Record<string, string>;
  /** Gateway host to bind (default 127.0.0.1). */
  hostname?: string;
}

/** A running stack. */
export interface Stack extends AsyncDisposable {
  readonly gatewayUrl: string;
  readonly options: StackOptions;
  /** Stop one service (SIGTERM, wait for exit). */
  stop(name: ServiceName): Promise<void>;
  /** Start a stopped service again with the same settings. */
  start(name: ServiceName): Promise<void>;
  /** Stop everything: gateway first, then the services. */
  shutdown(): Promise<void>;
}

const SETSID = await Deno.stat("/usr/bin/setsid").then(() => "/usr/bin/setsid", () => undefined);

/** The dev login created on first start. */
export const DEV_USER = { username: "dev", password: "dev-password", role: "admin" } as const;

const ROOT = new URL("../", import.meta.url);
const ENTRY: Record<ServiceName, string> = {
  session: new URL("session/main.ts", ROOT).pathname,
  statesync: new URL("statesync/main.ts", ROOT).pathname,
  gateway: new URL("gateway/main.ts", ROOT).pathname,
};

/** Create the dev user in `usersFile` unless a user named "dev" exists. */
export async function ensureDevUser(usersFile: string): Promise<boolean> {
  const store = await UserStore.load(usersFile);
  if (store.list().some((u) => u.username === DEV_USER.username)) return false;
  await addUser(usersFile, DEV_USER, { role: DEV_USER.role });
  return true;
}

function envFor(name: ServiceName, o: StackOptions): Record<string, string> {
  const dataDir = o.dataDir.replace(/\/$/, "");
  const sessionQuantum = (o.transports?.session ?? o.transport) === "quantum";
  const statesyncQuantum = (o.transports?.statesync ?? o.transport) === "quantum";
  if (name === "session") {
    return {
      AETHERFLOW_SESSION_HOST: "127.0.0.1",
      AETHERFLOW_SESSION_PORT: String(o.sessionPort),
      AETHERFLOW_SESSION_DATA_DIR: `${dataDir}/session`,
      AETHERFLOW_SESSION_QUANTUM_PORT: String(sessionQuantum ? o.sessionQuantumPort ?? 0 : 0),
      AETHERFLOW_SESSION_METRICS_PORT: String(o.sessionMetricsPort ?? 0),
    };
  }
  if (name === "statesync") {
    return {
      AETHERFLOW_STATESYNC_HOST: "127.0.0.1",
      AETHERFLOW_STATESYNC_PORT: String(o.statesyncPort),
      AETHERFLOW_STATESYNC_DATA_DIR: `${dataDir}/statesync`,
      AETHERFLOW_STATESYNC_QUANTUM_PORT: String(
        statesyncQuantum ? o.statesyncQuantumPort ?? 0 : 0,
      ),
      AETHERFLOW_STATESYNC_METRICS_PORT: String(o.statesyncMetricsPort ?? 0),
    };
  }
  const sessionAddress = o.dialSession ??
    `127.0.0.1:${sessionQuantum ? o.sessionQuantumPort : o.sessionPort}`;
  const statesyncAddress = o.dialStatesync ??
    `127.0.0.1:${statesyncQuantum ? o.statesyncQuantumPort : o.statesyncPort}`;
  return {
    AETHERFLOW_GATEWAY_HOSTNAME: o.hostname ?? "127.0.0.1",
    AETHERFLOW_GATEWAY_PORT: String(o.gatewayPort),
    AETHERFLOW_GATEWAY_AUTH__USERS_FILE: `${dataDir}/users.json`,
    AETHERFLOW_GATEWAY_SESSION__ADDRESS: sessionAddress,
    AETHERFLOW_GATEWAY_SESSION__TRANSPORT: sessionQuantum ? "quantum" : "tcp",
    AETHERFLOW_GATEWAY_STATESYNC__ADDRESS: statesyncAddress,
    AETHERFLOW_GATEWAY_STATESYNC__TRANSPORT: statesyncQuantum ? "quantum" : "tcp",
  };
}

/** Lines of a byte stream. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffer = "";
  const decoder = new TextDecoder();
  for await (const bytes of stream) {
    buffer += decoder.decode(bytes, { stream: true });
    let index;
    while ((index = buffer.indexOf("\n")) >= 0) {
      yield buffer.slice(0, index);
      buffer = buffer.slice(index + 1);
    }
  }
  if (buffer) yield buffer;
}

/**
 * Start session, statesync and gateway as child processes and wait until each logged that it
 * is listening.
 * @throws {Error} when a child exits before it is ready
 */
export async function startStack(options: StackOptions): Promise<Stack> {
  await Deno.mkdir(options.dataDir, { recursive: true });
  const children = new Map<ServiceName, { child: Deno.ChildProcess; done: Promise<void> }>();
  const encoder = new TextEncoder();

  async function start(name: ServiceName): Promise<void> {
    if (children.has(name)) return;
    const denoArgs = [
      "run",
      "-A",
      "--unstable-net",
      "--unstable-kv",
      "--unstable-raw-imports",
      ENTRY[name],
    ];
    // In its own session (setsid) a child does not get the terminal's Ctrl-C: the launcher
    // stops the gateway first, then the services, so in-flight ops still reach statesync.
    const child = new Deno.Command(SETSID ?? Deno.execPath(), {
      args: SETSID ? [Deno.execPath(), ...denoArgs] : denoArgs,
      // Each process names itself in its OpenTelemetry data (OTEL_DENO=true exports it).
      env: { OTEL_SERVICE_NAME: `aetherflow-${name}`, ...options.env, ...envFor(name, options) },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let ready!: () => void;
    let failed!: (error: Error) => void;
    const readyPromise = new Promise<void>((resolve, reject) => {
      ready = resolve;
      failed = reject;
    });
    const pump = async (stream: ReadableStream<Uint8Array>) => {
      for await (const line of lines(stream)) {
        if (/listening/i.test(line)) ready();
        if (options.logs !== false) Deno.stderr.writeSync(encoder.encode(`[${name}] ${line}\n`));
      }
    };
    const done = Promise.all([pump(child.stdout), pump(child.stderr), child.status]).then(
      ([, , status]) => {
        children.delete(name);
        failed(new Error(`${name} exited with code ${status.code} before it was ready`));
      },
    );
    children.set(name, { child, done });
    await readyPromise;
  }

  async function stop(name: ServiceName): Promise<void> {
    const entry = children.get(name);
    if (entry === undefined) return;
    try {
      entry.child.kill("SIGTERM");
    } catch { /* already exited */ }
    await entry.done;
  }

  const shutdown = async () => {
    await stop("gateway");
    await Promise.all([stop("statesync"), stop("session")]);
  };
  try {
    await ensureDevUser(`${options.dataDir.replace(/\/$/, "")}/users.json`);
    await Promise.all([start("session"), start("statesync")]);
    await start("gateway");
  } catch (error) {
    await shutdown();
    throw error;
  }
  return {
    gatewayUrl: `http://127.0.0.1:${options.gatewayPort}`,
    options,
    stop,
    start,
    shutdown,
    [Symbol.asyncDispose]: shutdown,
  };
}

/**
 * True when quantum/mod.ts provides both halves of gRPC over Quantum: the client channel
 * (`connectGrpcOverQuantum`, used by the gateway) and the server side (`listen` +
 * `serveGrpcOverQuantum`, used by the services).
 */
export async function quantumAvailable(): Promise<boolean> {
  const quantum = await import("../quantum/mod.ts") as Record<string, unknown>;
  return ["connectGrpcOverQuantum", "serveGrpcOverQuantum", "listen"].every((name) =>
    typeof quantum[name] === "function"
  );
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      port: { type: "string", default: "8080" },
      data: { type: "string", default: "./data" },
      transport: { type: "string", default: "quantum" },
    },
  });
  let transport = values.transport === "tcp" ? "tcp" as const : "quantum" as const;
  if (transport === "quantum" && !(await quantumAvailable())) {
    console.error("Quantum tunnel not available in this build: using gRPC over TCP");
    transport = "tcp";
  }
  const stack = await startStack({
    dataDir: values.data!,
    gatewayPort: Number(values.port),
    sessionPort: 50051,
    statesyncPort: 50052,
    sessionQuantumPort: 50061,
    statesyncQuantumPort: 50062,
    // Prometheus scrape targets (deploy/prometheus/prometheus.yml); the gateway serves its own.
    sessionMetricsPort: 9091,
    statesyncMetricsPort: 9092,
    transport,
    hostname: "0.0.0.0",
  });
  const base = `http://localhost:${values.port}`;
  const healthOf = () =>
    fetch(`${stack.gatewayUrl}/health`).then((r) => r.json(), () => null) as Promise<
      { data?: { status?: string; backends?: Record<string, { status: string }> } } | null
    >;
  let health = await healthOf();
  if (transport === "quantum" && health?.data?.status !== "ok") {
    // A service that does not serve gRPC over Quantum yet: reach it over TCP instead.
    const down = Object.entries(health?.data?.backends ?? {})
      .filter(([, h]) => h.status !== "SERVING").map(([name]) => name as "session" | "statesync");
    if (down.length > 0) {
      console.error(`Not reachable over Quantum: ${down.join(", ")}; using TCP for them`);
      const transports = { ...stack.options.transports };
      for (const name of down) transports[name] = "tcp";
      stack.options.transports = transports;
      await stack.stop("gateway");
      await stack.start("gateway");
      health = await healthOf();
    }
  }
  if (health?.data?.status !== "ok") {
    console.error(`Warning: a backend is not healthy yet: ${JSON.stringify(health?.data)}`);
  }
  const wiring = (["session", "statesync"] as const)
    .map((name) => `${name} over ${stack.options.transports?.[name] ?? transport}`).join(", ");
  console.log(`
AetherFlow is running (gateway → ${wiring}).
  REST API     ${base}/api/v1   (OpenAPI: ${base}/api/v1/openapi.json)
  WebSocket    ${base.replace("http", "ws")}/ws
  Health       ${base}/health
  Metrics      ${base}/metrics, http://localhost:9091/metrics (session), :9092 (statesync)
  Data         ${values.data}
  Dev login    ${DEV_USER.username} / ${DEV_USER.password}  (role ${DEV_USER.role})

  curl -s -X POST ${base}/api/v1/auth/login -H 'content-type: application/json' \\
    -d '{"username":"${DEV_USER.username}","password":"${DEV_USER.password}"}'

Press Ctrl-C to stop.`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    console.log("\nStopping gateway, then services...");
    await stack.shutdown();
    console.log("Stopped.");
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => void stop());
  Deno.addSignalListener("SIGTERM", () => void stop());
}
