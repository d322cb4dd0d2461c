/**
 * The standard gRPC health service (grpc.health.v1) for the StateSync server: Check and
 * Watch, for the whole server ("") and the StateSync service name.
 * @module
 */
import type { ServerWritableStream } from "@grpc/grpc-js";
import {
  type HealthCheckRequest,
  type HealthCheckResponse,
  HealthCheckResponse_ServingStatus as Status,
  type HealthServer,
} from "../proto/gen/health.ts";

/** Serving status shared by Check and Watch; {@link HealthState.set} notifies watchers. */
export class HealthState {
  #status: Status = Status.SERVING;
  #services: Set<string>;
  /** Open Watch streams, each with whether it watches a known service. */
  #watchers = new Map<ServerWritableStream<HealthCheckRequest, HealthCheckResponse>, boolean>();

  constructor(services: readonly string[]) {
    this.#services = new Set(["", ...services]);
  }

  /** Change the status of every service and tell the watchers. */
  set(serving: boolean): void {
    this.#status = serving ? Status.SERVING : Status.NOT_SERVING;
    for (const [call, known] of this.#watchers) if (known) call.write({ status: this.#status });
  }

  /** End every Watch stream (on shutdown). */
  endWatches(): void {
    for (const call of this.#watchers.keys()) call.end();
    this.#watchers.clear();
  }

  /** The grpc-js handlers. */
  handlers(): HealthServer {
    return {
      check: (call, callback) => {
        if (!this.#services.has(call.request.service)) {
          callback({ code: 5, details: `Unknown service ${call.request.service}` });
          return;
        }
        callback(null, { status: this.#status });
      },
      watch: (call) => {
        const known = this.#services.has(call.request.service);
        call.write({ status: known ? this.#status : Status.SERVICE_UNKNOWN });
        this.#watchers.set(call, known);
        call.on("cancelled", () => this.#watchers.delete(call));
      },
    };
  }
}
