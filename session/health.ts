/**
 * The standard gRPC health service (`grpc.health.v1.Health`, Check and Watch) written by hand:
 * its two messages have one field each, so they are encoded here with the protobuf wire
 * helpers instead of adding a proto. Works with `grpc_health_probe` and Kubernetes gRPC probes.
 *
 * @example
 * ```ts
 * const health = new HealthService();
 * health.setStatus("aetherflow.session.v1.SessionService", "SERVING");
 * addHealthService(server, health);
 * // on shutdown:
 * health.shutdown(); // every service NOT_SERVING, Watch streams ended
 * ```
 * @module
 */
import {
  type ChannelCredentials,
  type Client,
  type ClientReadableStream,
  makeGenericClientConstructor,
  type sendUnaryData,
  type Server,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  status as grpcStatus,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";

/** Serving status as in grpc/health/v1/health.proto. */
export type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

const STATUS_NUMBER: Record<ServingStatus, number> = {
  UNKNOWN: 0,
  SERVING: 1,
  NOT_SERVING: 2,
  SERVICE_UNKNOWN: 3,
};
const STATUS_NAME = Object.fromEntries(
  Object.entries(STATUS_NUMBER).map(([name, value]) => [value, name]),
) as Record<number, ServingStatus>;

/** `HealthCheckRequest`. */
export interface HealthCheckRequest {
  /** Service name; "" asks about the server as a whole. */
  service: string;
}

/** `HealthCheckResponse`. */
export interface HealthCheckResponse {
  /** The status. */
  status: ServingStatus;
}

function encodeRequest(request: HealthCheckRequest): Buffer {
  const writer = new BinaryWriter();
  if (request.service !== "") writer.uint32(10).string(request.service);
  return Buffer.from(writer.finish());
}

function decodeRequest(bytes: Buffer): HealthCheckRequest {
  const reader = new BinaryReader(bytes);
  let service = "";
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag === 10) service = reader.string();
    else reader.skip(tag & 7);
  }
  return { service };
}

function encodeResponse(response: HealthCheckResponse): Buffer {
  const writer = new BinaryWriter();
  const value = STATUS_NUMBER[response.status];
  if (value !== 0) writer.uint32(8).int32(value);
  return Buffer.from(writer.finish());
}

function decodeResponse(bytes: Buffer): HealthCheckResponse {
  const reader = new BinaryReader(bytes);
  let status: ServingStatus = "UNKNOWN";
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag === 8) status = STATUS_NAME[reader.int32()] ?? "UNKNOWN";
    else reader.skip(tag & 7);
  }
  return { status };
}

/** The service definition for `grpc.health.v1.Health`. */
export const healthServiceDefinition = {
  check: {
    path: "/grpc.health.v1.Health/Check",
    requestStream: false,
    responseStream: false,
    requestSerialize: encodeRequest,
    requestDeserialize: decodeRequest,
    responseSerialize: encodeResponse,
    responseDeserialize: decodeResponse,
  },
  watch: {
    path: "/grpc.health.v1.Health/Watch",
    requestStream: false,
    responseStream: true,
    requestSerialize: encodeRequest,
    requestDeserialize: decodeRequest,
    responseSerialize: encodeResponse,
    responseDeserialize: decodeResponse,
  },
} as const satisfies ServiceDefinition;

/** A typed client for the health service (e.g. for tests and the gateway's dependency check). */
export interface HealthClient extends Client {
  check(
    request: HealthCheckRequest,
    callback: (error: Error | null, response: HealthCheckResponse) => void,
  ): unknown;
  watch(request: HealthCheckRequest): ClientReadableStream<HealthCheckResponse>;
}

/** Constructor of {@link HealthClient}: `new HealthClient(address, credentials)`. */
export const HealthClient = makeGenericClientConstructor(
  healthServiceDefinition,
  "grpc.health.v1.Health",
) as unknown as new (
  address: string,
  credentials: ChannelCredentials,
) => HealthClient;

/** Serving status per service name, answered by Check and pushed to Watch streams. */
export class HealthService {
  #statuses = new Map<string, ServingStatus>([["", "SERVING"]]);
  #watchers = new Set<{ service: string; call: ServerWritableStream<unknown, unknown> }>();

  /** Set the status of `service` ("" is the whole server) and notify watchers. */
  setStatus(service: string, status: ServingStatus): void {
    this.#statuses.set(service, status);
    for (const watcher of this.#watchers) {
      if (watcher.service === service) watcher.call.write({ status });
    }
  }

  /** The status of `service`, or SERVICE_UNKNOWN. */
  status(service: string): ServingStatus {
    return this.#statuses.get(service) ?? "SERVICE_UNKNOWN";
  }

  /** Mark everything NOT_SERVING and end all Watch streams (call before draining). */
  shutdown(): void {
    for (const service of this.#statuses.keys()) this.setStatus(service, "NOT_SERVING");
    for (const watcher of this.#watchers) watcher.call.end();
    this.#watchers.clear();
  }

  /** Handlers for `server.addService(healthServiceDefinition, ...)`. */
  handlers(): UntypedServiceImplementation {
    return {
      check: (
        call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>,
        callback: sendUnaryData<HealthCheckResponse>,
      ) => {
        const status = this.#statuses.get(call.request.service);
        if (status === undefined) {
          callback({ code: grpcStatus.NOT_FOUND, details: "Unknown service" });
        } else {
          callback(null, { status });
        }
      },
      watch: (call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) => {
        const watcher = {
          service: call.request.service,
          call: call as ServerWritableStream<unknown, unknown>,
        };
        this.#watchers.add(watcher);
        call.write({ status: this.status(call.request.service) });
        call.on("cancelled", () => this.#watchers.delete(watcher));
      },
    };
  }
}

/** Register `health` on `server`. */
export function addHealthService(server: Server, health: HealthService): void {
  server.addService(healthServiceDefinition, health.handlers());
}
