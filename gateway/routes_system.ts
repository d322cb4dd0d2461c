/**
 * System routes: /ping, /version, /health (each backend's gRPC health; 503 when a required
 * one is down), /ws (WebSocket upgrade), /ws/stats, /breaker/stats and /breaker/reset
 * (admin), and the OpenAPI document at /api/v1/openapi.json.
 * @module
 */
import { z } from "zod";
import { AppError } from "../kernel/mod.ts";
import { errorResponse, okResponse, readJson } from "./_http.ts";
import type { GatewayDeps } from "./app.ts";
import type { Route } from "./router.ts";

const openapiText = await Deno.readTextFile(new URL("./openapi.json", import.meta.url));

/** The system routes. */
export function systemRoutes(deps: GatewayDeps): Route[] {
  return [
    {
      method: "GET",
      path: "/ping",
      auth: "none",
      handler: (_req, ctx) => Promise.resolve(okResponse(ctx, { pong: true, time: Date.now() })),
    },
    {
      method: "GET",
      path: "/version",
      auth: "none",
      handler: (_req, ctx) =>
        Promise.resolve(okResponse(ctx, {
          name: "aetherflow-gateway",
          version: deps.version,
          deno: Deno.version.deno,
          started_at: deps.startedAt,
        })),
    },
    {
      method: "GET",
      path: "/health",
      auth: "none",
      timeoutMs: 3_000,
      async handler(_req, ctx) {
        const backends = await deps.backends.health(
          Math.max(100, Math.min(2_000, ctx.deadline - Date.now() - 100)),
        );
        const down = Object.entries(backends).filter(([, h]) =>
          h.required && h.status !== "SERVING"
        );
        const data = {
          status: down.length === 0 ? "ok" : "degraded",
          backends,
          websocket: deps.hub.stats().connections,
        };
        if (down.length === 0) return okResponse(ctx, data);
        const error = new AppError(
          "UNAVAILABLE",
          `Required backend down: ${down.map(([name]) => name).join(", ")}`,
          { details: data },
        );
        return errorResponse(ctx, error);
      },
    },
    {
      method: "GET",
      path: "/ws",
      auth: "none",
      handler(req, ctx) {
        if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
          const response = errorResponse(
            ctx,
            new AppError("FAILED_PRECONDITION", "Expected a WebSocket upgrade request"),
          );
          return Promise.resolve(
            new Response(response.body, { status: 426, headers: response.headers }),
          );
        }
        const { socket, response } = deps.upgrade(req);
        deps.hub.accept(socket, { ip: ctx.ip, requestId: ctx.requestId });
        return Promise.resolve(response);
      },
    },
    {
      method: "GET",
      path: "/metrics",
      auth: "none",
      async handler() {
        return new Response(await deps.metrics.text(), {
          headers: { "content-type": deps.metrics.contentType },
        });
      },
    },
    {
      method: "GET",
      path: "/ws/stats",
      auth: "user",
      handler: (_req, ctx) => Promise.resolve(okResponse(ctx, deps.hub.stats())),
    },
    {
      method: "GET",
      path: "/breaker/stats",
      auth: "admin",
      handler: (_req, ctx) => Promise.resolve(okResponse(ctx, { breakers: deps.breakers.stats() })),
    },
    {
      method: "POST",
      path: "/breaker/reset",
      auth: "admin",
      async handler(req, ctx) {
        const body = await readJson(req, z.object({ name: z.string().min(1).optional() }).strict());
        const reset = deps.breakers.reset(body.name);
        if (body.name !== undefined && reset === 0) {
          throw new AppError("NOT_FOUND", `No breaker named ${body.name}`);
        }
        return okResponse(ctx, { reset });
      },
    },
    {
      method: "GET",
      path: "/api/v1/openapi.json",
      auth: "none",
      handler: (_req, ctx) => {
        const response = new Response(openapiText, {
          headers: { "content-type": "application/json; charset=utf-8" },
        });
        void ctx;
        return Promise.resolve(response);
      },
    },
  ];
}
