/**
 * Health check for containers (Docker `HEALTHCHECK`) and scripts: exits 0 when the target
 * is healthy, 1 otherwise, printing one line.
 *
 * Targets: `http://host:port/path` (healthy on a 2xx answer, e.g. the gateway's `/ping` or
 * `/health`) or `grpc://host:port[/service]` (the standard grpc.health.v1 `Check`, healthy
 * on SERVING). The target is the first argument, else `$HEALTHCHECK_TARGET`, else the
 * gateway's `http://127.0.0.1:8080/ping`.
 *
 * @example
 * ```ts
 * const result = await checkHealth("grpc://127.0.0.1:50051", { timeoutMs: 2000 });
 * if (!result.healthy) console.error(result.detail);
 * ```
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import {
  HealthCheckResponse_ServingStatus,
  healthCheckResponse_ServingStatusToJSON,
  HealthClient,
} from "../proto/gen/health.ts";

/** The target used when none is given. */
export const DEFAULT_TARGET = "http://127.0.0.1:8080/ping";

/** Outcome of {@link checkHealth}. */
export interface HealthResult {
  /** True when the target answered healthy in time. */
  readonly healthy: boolean;
  /** What was seen: the HTTP status, the gRPC serving status, or the error. */
  readonly detail: string;
}

/**
 * Check one target once.
 * @throws {TypeError} for a target that is not an http(s):// or grpc:// URL
 */
export async function checkHealth(
  target: string,
  options: { timeoutMs?: number } = {},
): Promise<HealthResult> {
  const timeoutMs = options.timeoutMs ?? 3_000;
  const url = new URL(target);
  if (url.protocol === "http:" || url.protocol === "https:") {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
      await response.body?.cancel();
      return { healthy: response.ok, detail: `HTTP ${response.status}` };
    } catch (error) {
      return { healthy: false, detail: (error as Error).message };
    }
  }
  if (url.protocol === "grpc:") return await checkGrpc(url, timeoutMs);
  throw new TypeError(`Unsupported health check target ${target}: use http:// or grpc://`);
}

function checkGrpc(url: URL, timeoutMs: number): Promise<HealthResult> {
  const client = new HealthClient(url.host, grpc.credentials.createInsecure());
  const service = decodeURIComponent(url.pathname.replace(/^\//, ""));
  const deadline = new Date(Date.now() + timeoutMs);
  return new Promise<HealthResult>((resolve) => {
    client.check({ service }, new grpc.Metadata(), { deadline }, (error, response) => {
      if (error) resolve({ healthy: false, detail: `${error.code} ${error.details}` });
      else {
        resolve({
          healthy: response.status === HealthCheckResponse_ServingStatus.SERVING,
          detail: healthCheckResponse_ServingStatusToJSON(response.status),
        });
      }
    });
  }).finally(() => client.close());
}

if (import.meta.main) {
  const target = Deno.args[0] ?? Deno.env.get("HEALTHCHECK_TARGET") ?? DEFAULT_TARGET;
  const result = await checkHealth(target);
  console.log(`${target}: ${result.healthy ? "healthy" : "unhealthy"} (${result.detail})`);
  Deno.exit(result.healthy ? 0 : 1);
}
