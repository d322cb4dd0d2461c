/**
 * Entrypoint of the session service:
 * `deno run -A session/main.ts [--config session.yaml]`.
 * Configuration: see `config.ts` (environment `AETHERFLOW_SESSION_*` overrides the file).
 * SIGINT/SIGTERM: health NOT_SERVING, refuse new calls (UNAVAILABLE), finish
 * the calls in flight, close the KV store and exit 0 — without an HTTP/2 GOAWAY, which
 * crashes Deno clients (denoland/deno#36788, see `kernel/call_gate.ts`).
 * @module
 */
import { createLogger, loadConfigOrExit } from "../kernel/mod.ts";
import { SessionConfigSchema } from "./config.ts";
import { startSessionService } from "./service.ts";

if (import.meta.main) {
  const config = await loadConfigOrExit(SessionConfigSchema, "session");
  const logger = createLogger({ service: "session", level: config.logLevel });
  let service;
  try {
    service = await startSessionService(config, { logger });
  } catch (error) {
    logger.error("Cannot start the session service", { error });
    Deno.exit(1);
  }
  const stop = async (signal: Deno.Signal) => {
    logger.info("Shutting down", { signal });
    // Exit without releasing the transport: no GOAWAY reaches clients (see kernel/call_gate.ts).
    await service.shutdown({ releaseTransport: false });
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => void stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => void stop("SIGTERM"));
  // Logged once the signal handlers are in place: a SIGTERM after this line drains cleanly.
  logger.info("Session service listening", {
    address: service.address,
    storage: config.storage,
    data_dir: config.storage === "kv" ? config.dataDir : null,
    quantum_port: config.quantumPort || null,
  });
}
