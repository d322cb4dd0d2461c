/**
 * The gateway as a plain handler `(Request, info?) => Promise<Response>`: global middleware
 * (request id, access log, CORS, per-IP rate limit, body limit), routing, then per-route
 * timeout, authentication and per-user rate limit. `serve.ts` puts it on `Deno.serve`;
 * tests call it with `new Request(...)`.
 *
 * @example
 * ```ts
 * const gateway = await createGateway({ config, backends, users });
 * const res = await gateway.handler(new Request("http://x/ping"));
 * ```
 * @module
 */
import { AppError, type Logger, type Registry, silentLogger } from "../kernel/mod.ts";
import {
  compose,
  type Context,
  errorResponse,
  type Handler,
  type Middleware,
  newContext,
} from "./_http.ts";
import { accessLog } from "./access_log.ts";
import { authenticate } from "./auth.ts";
import type { Backends } from "./backends.ts";
import { bodyLimit } from "./body_limit.ts";
import { BreakerRegistry } from "./breaker.ts";
import type { GatewayConfig } from "./config.ts";
import { cors } from "./cors.ts";
import { GatewayMetrics } from "./metrics.ts";
import { rateLimit, TokenBuckets } from "./rate_limit.ts";
import { requestId } from "./request_id.ts";
import { type Route, Router } from "./router.ts";
import { authRoutes } from "./routes_auth.ts";
import { documentRoutes } from "./routes_documents.ts";
import { sessionRoutes } from "./routes_sessions.ts";
import { systemRoutes } from "./routes_system.ts";
import { serveDemo } from "./static.ts";
import { timeout } from "./timeout.ts";
import { tracing } from "./tracing.ts";
import { createTokenService, type TokenService } from "./tokens.ts";
import type { UserStore } from "./users.ts";
import { WsHub } from "./ws_hub.ts";

/** Connection info from the server adapter. */
export interface ServeInfo {
  remoteAddr?: { hostname: string; port: number };
}

/** Upgrades a request to a WebSocket (Deno.upgradeWebSocket in production). */
export type Upgrader = (req: Request) => { socket: WebSocket; response: Response };

/** Options for {@link createGateway}. */
export interface GatewayOptions {
  config: GatewayConfig;
  backends: Backends;
  users: UserStore;
  /** Defaults to one built from `config.auth`. */
  tokens?: TokenService;
  /** Defaults to a fresh registry (shared with the backends when they use one). */
  breakers?: BreakerRegistry;
  logger?: Logger;
  /** Monotonic clock in ms for rate limits (default performance.now). */
  now?: () => number;
  /** Defaults to `Deno.upgradeWebSocket`. */
  upgrade?: Upgrader;
  /** Reported by /version. */
  version?: string;
  /** Metrics registry for /metrics (default: a new one); share it with the backends' metrics. */
  metricsRegistry?: Registry;
}

/** Everything route factories need. */
export interface GatewayDeps {
  config: GatewayConfig;
  backends: Backends;
  users: UserStore;
  tokens: TokenService;
  breakers: BreakerRegistry;
  hub: WsHub;
  logger: Logger;
  /** Session ids logged out on this gateway. */
  revoked: Set<string>;
  upgrade: Upgrader;
  version: string;
  startedAt: number;
  metrics: GatewayMetrics;
}

/** A running gateway. */
export interface Gateway {
  handler: (req: Request, info?: ServeInfo) => Promise<Response>;
  router: Router;
  hub: WsHub;
  breakers: BreakerRegistry;
  tokens: TokenService;
  /** Close WebSockets and statesync streams (not the backends, which the caller owns). */
  close(): Promise<void>;
}

/** The gateway version reported by /version. */
export const GATEWAY_VERSION = "0.1.0";

/** Build the gateway handler. */
export async function createGateway(options: GatewayOptions): Promise<Gateway> {
  const { config } = options;
  const logger = options.logger ?? silentLogger;
  const tokens = options.tokens ?? await createTokenService(config.auth);
  const breakers = options.breakers ?? new BreakerRegistry();
  const now = options.now ?? (() => performance.now());
  const revoked = new Set<string>();
  const hub = new WsHub({
    backends: options.backends,
    tokens,
    config: config.ws,
    logger,
    revoked,
  });
  const metrics = new GatewayMetrics(
    { hub, breakers },
    options.metricsRegistry ? { registry: options.metricsRegistry } : {},
  );
  const deps: GatewayDeps = {
    config,
    backends: options.backends,
    users: options.users,
    tokens,
    breakers,
    hub,
    logger,
    revoked,
    upgrade: options.upgrade ?? ((req) => Deno.upgradeWebSocket(req)),
    version: options.version ?? GATEWAY_VERSION,
    startedAt: Date.now(),
    metrics,
  };
  const routes: Route[] = [
    ...systemRoutes(deps),
    ...authRoutes(deps),
    ...sessionRoutes(deps),
    ...documentRoutes(deps),
  ];
  const router = new Router(routes);

  const ipBuckets = new TokenBuckets({
    ...config.rateLimit.perIp,
    maxKeys: config.rateLimit.maxKeys,
  });
  const userBuckets = new TokenBuckets({
    ...config.rateLimit.perUser,
    maxKeys: config.rateLimit.maxKeys,
  });
  const authUser = authenticate({ tokens, revoked });
  const authAdmin = authenticate({ tokens, revoked, role: "admin" });
  const perUser = rateLimit({
    name: "user",
    buckets: userBuckets,
    key: (_r, c) => c.user?.id,
    now,
  });

  // Per-route chains, built once.
  const chains = new Map<Route, Handler>();
  for (const route of routes) {
    const chain: Middleware[] = [timeout({ ms: route.timeoutMs ?? config.requestTimeoutMs })];
    if (route.auth === "user") chain.push(authUser, perUser);
    if (route.auth === "admin") chain.push(authAdmin, perUser);
    chains.set(route, compose(chain, guard(route.handler)));
  }

  const dispatch: Handler = (req, ctx) => {
    const url = new URL(req.url);
    const match = router.match(req.method, url.pathname);
    if (match === undefined) {
      // The demo page and the browser client (GET/HEAD of `/`, `/app.js`, ...).
      const asset = serveDemo(req);
      if (asset !== undefined) return Promise.resolve(asset);
      return Promise.resolve(
        errorResponse(ctx, new AppError("NOT_FOUND", `No route for ${url.pathname}`)),
      );
    }
    if ("allowed" in match) {
      const response = errorResponse(
        ctx,
        new AppError("UNIMPLEMENTED", `Method ${req.method} not allowed on ${url.pathname}`),
      );
      const out = new Response(response.body, { status: 405, headers: response.headers });
      out.headers.set("allow", match.allowed.join(", "));
      return Promise.resolve(out);
    }
    ctx.route = match.route.path;
    ctx.params = match.params;
    return chains.get(match.route)!(req, ctx);
  };

  const app = compose([
    requestId(),
    tracing(),
    metrics.middleware(),
    accessLog({ logger }),
    cors({ origins: config.corsOrigins }),
    rateLimit({ name: "ip", buckets: ipBuckets, key: (_r, c) => c.ip, now }),
    bodyLimit({ maxBytes: config.maxBodyBytes }),
  ], guard(dispatch));

  return {
    router,
    hub,
    breakers,
    tokens,
    handler(req, info) {
      const ctx: Context = newContext({
        requestId: "",
        ip: clientIp(req, {
          peer: info?.remoteAddr?.hostname ?? "unknown",
          trustedHops: config.trustedProxyHops,
        }),
        log: logger,
      });
      return app(req, ctx);
    },
    async close() {
      await hub.close();
    },
  };
}

/**
 * The client address: the peer, or with `hops` trusted proxies the entry `hops` from the
 * right of `X-Forwarded-For` (what the outermost trusted proxy saw).
 */
export function clientIp(req: Request, via: { peer: string; trustedHops: number }): string {
  const { peer, trustedHops: hops } = via;
  if (hops <= 0) return peer;
  const forwarded = req.headers.get("x-forwarded-for");
  if (forwarded === null) return peer;
  const entries = forwarded.split(",").map((e) => e.trim()).filter((e) => e !== "");
  return entries[entries.length - hops] ?? entries[0] ?? peer;
}

/** Turn anything a handler throws into an envelope response. */
function guard(handler: Handler): Handler {
  return async function guarded(req, ctx) {
    try {
      return await handler(req, ctx);
    } catch (error) {
      return errorResponse(ctx, error);
    }
  };
}
