/**
 * The standard gRPC health service (`grpc.health.v1.Health`, Check and Watch) on the
 * generated `proto/gen/health.ts`: a status per service name ("" is the server as a whole),
 * answered by Check and pushed to Watch streams. Works with `grpc_health_probe` and
 * Kubernetes gRPC probes.
 *
 * @example
 * ```ts
 * const health = new HealthState(["aetherflow.session.v1.SessionService"]);
 * addHealthService(server, health);
 * // on shutdown:
 * health.shutdown(); // every service NOT_SERVING, Watch streams ended
 * ```
 * @module
 */
import type { Server, ServerWritableStream } from "@grpc/grpc-js";
import {
  type HealthCheckRequest,
  type HealthCheckResponse,
  HealthCheckResponse_ServingStatus as Wire,
  type HealthServer,
  HealthService,
} from "../proto/gen/health.ts";
import { StatusCode } from "./errors.ts";

/** Serving status as in grpc/health/v1/health.proto. */
export type ServingStatus =
  /** Not known (never set). */
  | "UNKNOWN"
  /** Ready for calls. */
  | "SERVING"
  /** Up but not taking calls (e.g. shutting down). */
  | "NOT_SERVING"
  /** Watch only: the service name is not registered (yet). */
  | "SERVICE_UNKNOWN";

const WIRE: Record<ServingStatus, Wire> = {
  UNKNOWN: Wire.UNKNOWN,
  SERVING: Wire.SERVING,
  NOT_SERVING: Wire.NOT_SERVING,
  SERVICE_UNKNOWN: Wire.SERVICE_UNKNOWN,
};

type WatchCall = ServerWritableStream<HealthCheckRequest, HealthCheckResponse>;

/** Serving status per service name, answered by Check and pushed to Watch streams. */
export class HealthState {
  #statuses = new Map<string, ServingStatus>();
  #watchers = new Map<WatchCall, string>();

  /** Register "" and `services`, all SERVING. */
  constructor(services: readonly string[] = []) {
    for (const service of ["", ...services]) this.#statuses.set(service, "SERVING");
  }

  /** Set the status of `service` ("" is the whole server; registers it) and notify watchers. */
  setStatus(service: string, status: ServingStatus): void {
    this.#statuses.set(service, status);
    for (const [call, watched] of this.#watchers) {
      if (watched === service) call.write({ status: WIRE[status] });
    }
  }

  /** Set every registered service SERVING or NOT_SERVING and notify watchers. */
  set(serving: boolean): void {
    for (const service of [...this.#statuses.keys()]) {
      this.setStatus(service, serving ? "SERVING" : "NOT_SERVING");
    }
  }

  /** The status of `service`, or SERVICE_UNKNOWN when it is not registered. */
  status(service: string): ServingStatus {
    return this.#statuses.get(service) ?? "SERVICE_UNKNOWN";
  }

  /** End every Watch stream (on shutdown). */
  endWatches(): void {
    for (const call of this.#watchers.keys()) call.end();
    this.#watchers.clear();
  }

  /** Mark everything NOT_SERVING and end all Watch streams (call before draining). */
  shutdown(): void {
    this.set(false);
    this.endWatches();
  }

  /** Handlers for `server.addService(HealthService, ...)` (see {@link addHealthService}). */
  handlers(): HealthServer {
    return {
      check: (call, callback) => {
        const status = this.#statuses.get(call.request.service);
        if (status === undefined) {
          callback({
            code: StatusCode.NOT_FOUND,
            details: `Unknown service ${call.request.service}`,
          });
          return;
        }
        callback(null, { status: WIRE[status] });
      },
      watch: (call) => {
        this.#watchers.set(call, call.request.service);
        call.write({ status: WIRE[this.status(call.request.service)] });
        call.on("cancelled", () => this.#watchers.delete(call));
      },
    };
  }
}

/** Register `health` on `server` as `grpc.health.v1.Health`. */
export function addHealthService(server: Server, health: HealthState): void {
  server.addService(HealthService, health.handlers());
}
