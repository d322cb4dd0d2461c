/**
 * The AetherFlow gateway: HTTP + WebSocket front door for the session and statesync
 * services, with JWT auth, rate limits, CORS, body limits, timeouts, circuit breakers and
 * gRPC over TCP or Quantum.
 *
 * @example
 * ```ts
 * const config = GatewayConfigSchema.parse({});
 * const backends = await createGrpcBackends({ session, statesync, breakers });
 * const gateway = await createGateway({ config, backends, users: new UserStore([]) });
 * await using server = serveGateway(gateway, { port: 8080 });
 * ```
 * @module
 */
export * from "./app.ts";
export * from "./backends.ts";
export * from "./breaker.ts";
export * from "./config.ts";
export * from "./grpc_backends.ts";
export * from "./serve.ts";
export * from "./tokens.ts";
export * from "./users.ts";
export { CloseCode, WsHub, type WsStats } from "./ws_hub.ts";
export { TokenBuckets } from "./rate_limit.ts";
