/**
 * Entrypoint of the statesync service:
 * `deno run -A statesync/main.ts [--config statesync.yaml]`.
 * Configuration: see `config.ts` (environment `AETHERFLOW_STATESYNC_*` overrides the file).
 * SIGINT/SIGTERM end the streams, drain in-flight calls, close the KV store and exit 0 — without
 * an HTTP/2 GOAWAY, which crashes Deno clients (denoland/deno#36788, see `kernel/call_gate.ts`).
 * @module
 */
import { createLogger, loadConfigOrExit } from "../kernel/mod.ts";
import { StateSyncConfigSchema } from "./config.ts";
import { startStateSyncService } from "./service.ts";

if (import.meta.main) {
  const config = await loadConfigOrExit(StateSyncConfigSchema, "statesync");
  const logger = createLogger({ service: "statesync", level: config.logLevel });
  const service = await startStateSyncService(config, { logger });
  const stop = async (signal: Deno.Signal) => {
    logger.info("Shutting down", { signal });
    // Exit without releasing the transport: no GOAWAY reaches clients (kernel/call_gate.ts).
    await service.shutdown({ releaseTransport: false });
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => void stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => void stop("SIGTERM"));
  // Logged once the signal handlers are in place: a SIGTERM after this line drains cleanly.
  logger.info("Statesync service listening", {
    address: service.address,
    storage: config.storage,
    data_dir: config.storage === "kv" ? config.dataDir : null,
    quantum_port: service.quantumPort,
    metrics_port: service.metricsPort,
  });
}
