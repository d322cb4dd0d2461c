/**
 * The AetherFlow client library: a framework-free TypeScript client for the gateway's
 * WebSocket protocol, for browsers (bundled with `deno task bundle:client`) and Deno.
 * Token login/refresh, reconnect with jittered backoff, resume from the last seen version,
 * offline queue, client-side OT (optimistic apply, one op in flight), presence and locks.
 *
 * @example
 * ```ts
 * import { AetherFlowClient, RestAuth, textEditOp } from "./mod.ts";
 * const auth = new RestAuth("http://localhost:8080");
 * await auth.login("dev", "dev");
 * const client = new AetherFlowClient({ url: "ws://localhost:8080/ws", auth });
 * client.connect();
 * const doc = await client.open(documentId);
 * doc.submit(textEditOp("", "Hello", ["text"]));
 * ```
 * @module
 */
export * from "./auth.ts";
export * from "./backoff.ts";
export * from "./client.ts";
export * from "./clock.ts";
export * from "./document.ts";
export * from "./emitter.ts";
export * from "./ot_state.ts";
export * from "./text.ts";
export * from "./types.ts";
export { RequestError } from "./_link.ts";
