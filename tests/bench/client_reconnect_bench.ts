/**
 * Reconnect storm after a gateway restart (`deno task bench:client`): N browser-client
 * instances (gateway/client, in Deno) hold one document open on the real stack; the gateway
 * is stopped and started again; we record every connection attempt and when each client is
 * online and resynced. Full jitter (the client's default) against no jitter (every client
 * waits the full backoff ceiling, like a naive exponential backoff), side by side.
 *
 * `CLIENTS=100 deno task bench:client`
 */
import { freePort, tempDir } from "../../kernel/testing.ts";
import { DEV_USER, startStack } from "../../gateway/start.ts";
import {
  AetherFlowClient,
  type DocHandle,
  RestAuth,
  type SocketLike,
} from "../../gateway/client/mod.ts";

const CLIENTS = Number(Deno.env.get("CLIENTS") ?? 100);
const WAIT_MS = 60_000;

interface Result {
  strategy: string;
  attempts: number;
  peakAttemptsPer100ms: number;
  onlineP50: number;
  onlineP99: number;
  onlineMax: number;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

export async function run(strategy: "full jitter" | "no jitter"): Promise<Result> {
  await using dir = await tempDir("aetherflow-reconnect-bench-");
  const stack = await startStack({
    dataDir: dir.path,
    gatewayPort: freePort(),
    sessionPort: freePort(),
    statesyncPort: freePort(),
    transport: "tcp",
    logs: false,
    // Every client comes back at once: lift the per-IP HTTP limit for the token refreshes.
    env: {
      AETHERFLOW_GATEWAY_RATE_LIMIT__PER_IP__CAPACITY: "100000",
      AETHERFLOW_GATEWAY_RATE_LIMIT__PER_IP__REFILL_PER_SECOND: "100000",
    },
  });
  const clients: AetherFlowClient[] = [];
  try {
    const auth = new RestAuth(stack.gatewayUrl);
    await auth.login(DEV_USER.username, DEV_USER.password);
    const doc = await auth.request<{ id: string }>("POST", "/api/v1/documents", {
      name: "bench",
      type: "text",
      content: { text: "" },
    });
    const attempts: number[] = [];
    const wsUrl = `${stack.gatewayUrl.replace("http", "ws")}/ws`;
    const docs: DocHandle[] = [];
    for (let i = 0; i < CLIENTS; i++) {
      const client = new AetherFlowClient({
        url: wsUrl,
        auth,
        random: strategy === "full jitter" ? Math.random : () => 0.999,
        socket: (url) => {
          attempts.push(performance.now());
          return new WebSocket(url) as unknown as SocketLike;
        },
      });
      clients.push(client);
      client.connect();
      docs.push(await client.open(doc.id));
    }
    await stack.stop("gateway");
    await Promise.all(
      clients.map((c) =>
        c.status === "online" ? c.events.next("status", (s) => s.status !== "online") : undefined
      ),
    );
    attempts.length = 0;
    const synced = docs.map((d) => d.events.next("synced"));
    await stack.start("gateway");
    const back = performance.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const times = await Promise.race([
      Promise.all(synced.map((p) => p.then(() => performance.now() - back))),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("clients did not come back")), WAIT_MS);
      }),
    ]).finally(() => clearTimeout(timer));
    times.sort((a, b) => a - b);
    let peak = 0;
    for (const t of attempts) {
      peak = Math.max(peak, attempts.filter((u) => u >= t && u < t + 100).length);
    }
    return {
      strategy,
      attempts: attempts.length,
      peakAttemptsPer100ms: peak,
      onlineP50: quantile(times, 0.5),
      onlineP99: quantile(times, 0.99),
      onlineMax: times.at(-1) ?? NaN,
    };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await stack.shutdown();
  }
}

if (import.meta.main) {
  const results = [await run("full jitter"), await run("no jitter")];
  console.log(`\nReconnect after a gateway restart, ${CLIENTS} clients (${Deno.build.target})\n`);
  console.log(
    "| backoff | connection attempts | peak attempts / 100 ms | resynced p50 (ms) | p99 (ms) | max (ms) |",
  );
  console.log("|---|---|---|---|---|---|");
  for (const r of results) {
    console.log(
      `| ${r.strategy} | ${r.attempts} | ${r.peakAttemptsPer100ms} | ${r.onlineP50.toFixed(0)} | ${
        r.onlineP99.toFixed(0)
      } | ${r.onlineMax.toFixed(0)} |`,
    );
  }
}
