/**
 * The runtime adapter: puts the gateway handler on `Deno.serve` (WebSocket upgrades go
 * through `Deno.upgradeWebSocket` inside the /ws route). Everything else is runtime-free.
 * @module
 */
import type { Gateway } from "./app.ts";

/** A listening gateway server. */
export interface GatewayServer extends AsyncDisposable {
  /** The bound port (useful with port 0). */
  readonly port: number;
  readonly hostname: string;
  /** Stop accepting, close WebSockets, wait for in-flight requests. */
  shutdown(): Promise<void>;
}

/**
 * Serve `gateway` on `hostname:port` (port 0 picks a free one).
 * @example
 * ```ts
 * await using server = serveGateway(gateway, { port: 0 });
 * ```
 */
export function serveGateway(
  gateway: Gateway,
  options: { hostname?: string; port: number; onListen?: (addr: Deno.NetAddr) => void },
): GatewayServer {
  const server = Deno.serve({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port,
    onListen: options.onListen ?? (() => {}),
  }, (req, info) => gateway.handler(req, { remoteAddr: info.remoteAddr as Deno.NetAddr }));
  const addr = server.addr as Deno.NetAddr;
  let done: Promise<void> | undefined;
  const shutdown = () => {
    done ??= (async () => {
      await gateway.close();
      await server.shutdown();
    })();
    return done;
  };
  return { port: addr.port, hostname: addr.hostname, shutdown, [Symbol.asyncDispose]: shutdown };
}
