/**
 * A local AetherFlow cluster on loopback, for trying the distributed mode and for the
 * cluster tests: a real etcd (Debian `etcd-server`), two session and two statesync instances
 * on `storage: etcd` (they register for discovery), and two gateways that find them through
 * etcd and balance with P2C. A dev user is written to a users file for logging in.
 *
 * `deno task cluster` runs it until Ctrl-C and prints the gateway URLs (8080 and 8081 when
 * free). Programmatic use:
 *
 * @example
 * ```ts
 * await using cluster = await startCluster();
 * const [first, second] = cluster.gateways; // "http://127.0.0.1:…"
 * await cluster.kill("statesync", 0); // kill -9 one statesync instance
 * ```
 * @module
 */
import { freePort, readLines, startEtcd, tempDir } from "../kernel/testing.ts";
import { addUser } from "../gateway/user_add.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** The dev user of the cluster's users file. */
export const CLUSTER_USER = { username: "demo", password: "demo-password" };

/** A service kind of the cluster. */
export type ClusterService = "session" | "statesync" | "gateway";

/** Options for {@link startCluster}. */
export interface ClusterOptions {
  /** Gateway ports (default: free ports; the CLI asks for 8080 and 8081). */
  gatewayPorts?: [number, number];
  /** Log level of the services (default "warn"). */
  logLevel?: "debug" | "info" | "warn" | "error";
  /** Forward the services' log lines here (default: dropped). */
  onLog?: (service: string, line: string) => void;
}

/** One child process of the cluster. */
interface Member {
  name: string;
  child: Deno.ChildProcess;
  address: string;
  drain: Promise<void>;
}

/** A running cluster. */
export interface Cluster extends AsyncDisposable {
  /** etcd client URL. */
  readonly etcd: string;
  /** Gateway base URLs. */
  readonly gateways: string[];
  /** gRPC addresses of the instances, by service. */
  readonly addresses: Record<"session" | "statesync", string[]>;
  /** `/metrics` URLs of the statesync instances (same order). */
  readonly statesyncMetrics: string[];
  /** SIGKILL one instance (no graceful shutdown, its lease is left to expire). */
  kill(service: ClusterService, index: number): Promise<void>;
  /** Stop everything (SIGTERM, then the etcd server and temp files). */
  stop(): Promise<void>;
}

/**
 * Start etcd, 2 × session, 2 × statesync and 2 × gateway.
 * @throws {Error} when etcd is missing or a service does not come up
 */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const logLevel = options.logLevel ?? "warn";
  const etcd = await startEtcd();
  const dir = await tempDir("aetherflow-cluster-");
  const members: Member[] = [];
  const stop = async () => {
    for (const member of members.reverse()) {
      try {
        member.child.kill("SIGTERM");
      } catch { /* already gone */ }
      await member.child.status;
      await member.drain;
    }
    members.length = 0;
    await etcd.stop();
    await dir[Symbol.asyncDispose]();
  };
  try {
    const usersFile = `${dir.path}/users.json`;
    await addUser(usersFile, CLUSTER_USER, { iterations: 1000 });
    const etcdEnv = (service: string) => ({
      [`AETHERFLOW_${service}_STORAGE`]: "etcd",
      [`AETHERFLOW_${service}_ETCD__ENDPOINTS`]: JSON.stringify([etcd.endpoint]),
      [`AETHERFLOW_${service}_LOG_LEVEL`]: logLevel === "debug" ? "debug" : "info",
    });
    const spawn = async (
      name: string,
      script: string,
      ready: string,
      env: Record<string, string>,
      address: string,
    ) => {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${ROOT}${script}`],
        env,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const lines = readLines(child.stderr);
      const seen: string[] = [];
      // next() rather than for-await: a `break` would cancel the pipe under the child.
      for (;;) {
        const { value, done } = await lines.next();
        if (done) throw new Error(`${name} exited before it was ready:\n${seen.join("\n")}`);
        seen.push(value);
        if (value.includes(ready)) break;
        if (logLevel !== "info" && logLevel !== "debug" && !/"level":"(warn|error)"/.test(value)) {
          continue;
        }
        options.onLog?.(name, value);
      }
      const drain = (async () => {
        for (;;) {
          const { value, done } = await lines.next();
          if (done) return;
          if (logLevel === "info" || logLevel === "debug" || /"level":"(warn|error)"/.test(value)) {
            options.onLog?.(name, value);
          }
        }
      })();
      members.push({ name, child, address, drain });
    };
    const addresses = { session: [] as string[], statesync: [] as string[] };
    for (let i = 0; i < 2; i++) {
      const port = freePort();
      await spawn(`session-${i}`, "session/main.ts", "Session service listening", {
        ...etcdEnv("SESSION"),
        AETHERFLOW_SESSION_PORT: String(port),
      }, `127.0.0.1:${port}`);
      addresses.session.push(`127.0.0.1:${port}`);
    }
    const statesyncMetrics: string[] = [];
    for (let i = 0; i < 2; i++) {
      const port = freePort();
      const metricsPort = freePort();
      await spawn(`statesync-${i}`, "statesync/main.ts", "Statesync service listening", {
        ...etcdEnv("STATESYNC"),
        AETHERFLOW_STATESYNC_PORT: String(port),
        AETHERFLOW_STATESYNC_METRICS_PORT: String(metricsPort),
      }, `127.0.0.1:${port}`);
      addresses.statesync.push(`127.0.0.1:${port}`);
      statesyncMetrics.push(`http://127.0.0.1:${metricsPort}/metrics`);
    }
    const gateways: string[] = [];
    for (let i = 0; i < 2; i++) {
      const port = options.gatewayPorts?.[i] ?? freePort();
      await spawn(`gateway-${i}`, "gateway/main.ts", "Gateway listening", {
        AETHERFLOW_GATEWAY_HOSTNAME: "127.0.0.1",
        AETHERFLOW_GATEWAY_PORT: String(port),
        AETHERFLOW_GATEWAY_LOG_LEVEL: "info",
        AETHERFLOW_GATEWAY_AUTH__USERS_FILE: usersFile,
        AETHERFLOW_GATEWAY_DISCOVERY__ENABLED: "true",
        AETHERFLOW_GATEWAY_DISCOVERY__ETCD__ENDPOINTS: JSON.stringify([etcd.endpoint]),
      }, `127.0.0.1:${port}`);
      gateways.push(`http://127.0.0.1:${port}`);
    }
    return {
      etcd: etcd.endpoint,
      gateways,
      addresses,
      statesyncMetrics,
      async kill(service, index) {
        const member = members.find((m) => m.name === `${service}-${index}`);
        if (member === undefined) throw new RangeError(`No ${service}-${index} in the cluster`);
        try {
          member.child.kill("SIGKILL");
        } catch { /* already gone */ }
        await member.child.status;
        await member.drain;
      },
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

if (import.meta.main) {
  const wanted: [number, number] = [8080, 8081];
  const free = (port: number) => {
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return true;
    } catch {
      return false;
    }
  };
  const cluster = await startCluster({
    gatewayPorts: wanted.every(free) ? wanted : undefined,
    logLevel: "warn",
    onLog: (service, line) => console.error(`[${service}] ${line}`),
  });
  console.log(`etcd:       ${cluster.etcd}`);
  console.log(`session:    ${cluster.addresses.session.join(", ")}`);
  console.log(`statesync:  ${cluster.addresses.statesync.join(", ")}`);
  console.log(`gateways:   ${cluster.gateways.join(", ")}`);
  console.log(`login:      ${CLUSTER_USER.username} / ${CLUSTER_USER.password}   (Ctrl-C stops)`);
  const shutdown = async () => {
    await cluster.stop();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => void shutdown());
  Deno.addSignalListener("SIGTERM", () => void shutdown());
}
