/**
 * Shared by the benchmarks that measure gRPC transport cost without protobuf: a bidi-streaming
 * method that carries raw bytes, and a server bound on loopback over TCP or a Quantum listener.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import type { Buffer } from "node:buffer";
import { type QuantumListener, serveGrpcOverQuantum } from "../../quantum/mod.ts";

const identity = (b: Buffer) => b;

/** A service with one bidi-streaming method `method` at `path`, messages as raw bytes. */
export function bytesStreamService(method: string, path: string): grpc.ServiceDefinition {
  return {
    [method]: {
      path,
      requestStream: true,
      responseStream: true,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  };
}

/** Serve `server` on `quantum` if given, else on TCP 127.0.0.1; resolves with the port. */
export function serveOnLoopback(server: grpc.Server, quantum?: QuantumListener): Promise<number> {
  if (quantum !== undefined) {
    serveGrpcOverQuantum(server, quantum);
    return Promise.resolve(quantum.addr.port);
  }
  return new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (error, bound) => error ? reject(error) : resolve(bound),
    )
  );
}
