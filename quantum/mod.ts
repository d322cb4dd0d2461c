/**
 * Quantum: AetherFlow's reliable, ordered, flow-controlled transport over UDP — stateless
 * cookie handshake, SACK, RFC 6298 RTO, pluggable congestion control (BBR default, NewReno),
 * per-connection Reed-Solomon FEC with adaptive parity,
 * connection migration, Web Streams API with backpressure, and a message API on top.
 * The wire format is specified in `quantum/PROTOCOL.md`.
 *
 * @example
 * ```ts
 * import { dial, listen, messageChannel } from "./mod.ts";
 *
 * const listener = listen({ hostname: "127.0.0.1", port: 9000 });
 * (async () => {
 *   for await (const conn of listener) conn.readable.pipeTo(conn.writable); // echo
 * })();
 *
 * const conn = await dial({ hostname: "127.0.0.1", port: 9000 });
 * const messages = messageChannel(conn);
 * await messages.send(new TextEncoder().encode("hello"));
 * console.log(await messages.receive()); // the echo
 * await messages.close();
 * await conn.close();
 * console.log((await conn.closed).reason); // "closed"
 * await listener.close();
 * ```
 * @module
 */
export * from "./endpoint.ts";
export type {
  CloseInfo,
  CloseReason,
  CongestionControl,
  ConnectionOptions,
  ConnectionState,
  ConnectionStats,
  DropReason,
  QuantumConnection,
} from "./connection.ts";
export { closeError, MAX_FEC_PAYLOAD_SIZE } from "./connection.ts";
export * from "./fec_hooks.ts";
export * from "./messages.ts";
export * from "./grpc_bridge.ts";
export * from "./congestion.ts";
export * from "./newreno.ts";
export * from "./bbr.ts";
export * from "./delivery_rate.ts";
export * from "./pacer.ts";
export * from "./fec.ts";
export * from "./rtt.ts";
export * from "./clock.ts";
export * from "./packet_conn.ts";
export { setReceiveBuffer } from "./_sockopt.ts";
export * from "./sim_net.ts";
export * from "./impairments.ts";
export * from "./relay.ts";
export * from "./hooks.ts";
export * from "./cookie.ts";
export * from "./wire.ts";
export * from "./metrics.ts";
