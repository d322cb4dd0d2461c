/**
 * Auth routes: login (users file, PBKDF2), refresh (the session token is the refresh token,
 * rotated on every use by the session service; a reused rotated token terminates the
 * session), logout (deletes the session) and me.
 * @module
 */
import { z } from "zod";
import { AppError } from "../kernel/mod.ts";
import type { Session } from "../proto/gen/session.ts";
import { callOptions, type Context, okResponse, readJson, userOf } from "./_http.ts";
import type { GatewayDeps } from "./app.ts";
import type { Route } from "./router.ts";
import type { UserRecord } from "./users.ts";

const LoginSchema = z.object({
  username: z.string().min(1).max(64),
  password: z.string().min(1).max(1024),
}).strict();

const RefreshSchema = z.object({ refresh_token: z.string().min(16).max(512) }).strict();

/** The auth routes. */
export function authRoutes(deps: GatewayDeps): Route[] {
  async function tokenResponse(ctx: Context, user: UserRecord, session: Session, refresh: string) {
    const { token, expiresAt } = await deps.tokens.issue({
      sub: user.id,
      sid: session.id,
      name: user.username,
      role: user.role,
    });
    return okResponse(ctx, {
      access_token: token,
      token_type: "Bearer",
      expires_in: deps.tokens.ttlSeconds,
      expires_at: expiresAt,
      refresh_token: refresh,
      refresh_expires_at: session.expiresAt,
      session_id: session.id,
      user: { id: user.id, username: user.username, role: user.role },
    });
  }

  return [
    {
      method: "POST",
      path: "/api/v1/auth/login",
      auth: "none",
      async handler(req, ctx) {
        const body = await readJson(req, LoginSchema);
        const user = await deps.users.authenticate(body.username, body.password);
        if (user === undefined) {
          throw new AppError("UNAUTHENTICATED", "Invalid username or password");
        }
        const created = await deps.backends.session.createSession({
          userId: user.id,
          connectionId: "",
          clientIp: ctx.ip === "unknown" ? "" : ctx.ip,
          clientPort: 0,
          serverAddress: "",
          ttlSeconds: deps.config.auth.refreshTtlSeconds,
          metadata: { username: user.username, kind: "login" },
        }, callOptions(ctx));
        return tokenResponse(ctx, user, created.session!, created.token);
      },
    },
    {
      method: "POST",
      path: "/api/v1/auth/refresh",
      auth: "none",
      async handler(req, ctx) {
        const body = await readJson(req, RefreshSchema);
        let rotated;
        try {
          rotated = await deps.backends.session.rotateToken(
            { token: body.refresh_token },
            callOptions(ctx),
          );
        } catch (error) {
          const appError = AppError.from(error);
          if (
            appError.status === "UNAUTHENTICATED" || appError.status === "NOT_FOUND" ||
            appError.status === "FAILED_PRECONDITION"
          ) {
            // Reused, unknown or terminated: the client must log in again.
            throw new AppError("UNAUTHENTICATED", `Refresh token rejected: ${appError.message}`, {
              cause: error,
            });
          }
          throw appError;
        }
        const session = rotated.session!;
        const user = deps.users.byId(session.userId);
        if (user === undefined) throw new AppError("UNAUTHENTICATED", "User no longer exists");
        return tokenResponse(ctx, user, session, rotated.token);
      },
    },
    {
      method: "POST",
      path: "/api/v1/auth/logout",
      auth: "user",
      async handler(_req, ctx) {
        const user = userOf(ctx);
        if (user.sessionId) {
          deps.revoked.add(user.sessionId);
          try {
            await deps.backends.session.deleteSession(
              { sessionId: user.sessionId },
              callOptions(ctx),
            );
          } catch (error) {
            if (AppError.from(error).status !== "NOT_FOUND") throw error;
          }
          deps.hub.closeSession(user.sessionId);
        }
        return okResponse(ctx, { logged_out: true });
      },
    },
    {
      method: "GET",
      path: "/api/v1/auth/me",
      auth: "user",
      handler(_req, ctx) {
        const user = userOf(ctx);
        return Promise.resolve(okResponse(ctx, {
          id: user.id,
          username: user.username,
          role: user.role,
          session_id: user.sessionId,
          token_expires_at: user.expiresAt,
        }));
      },
    },
  ];
}
