/**
 * JWT authentication middleware: requires `Authorization: Bearer <token>`, verifies it,
 * rejects tokens of sessions that logged out here, and (for admin routes) checks the role.
 * @module
 */
import { AppError } from "../kernel/mod.ts";
import { errorResponse, type Middleware } from "./_http.ts";
import type { TokenService } from "./tokens.ts";

/** Options for {@link authenticate}. */
export interface AuthOptions {
  tokens: TokenService;
  /** Role required ("admin"); any authenticated user when omitted. */
  role?: string;
  /** Session ids revoked by logout on this gateway (their access tokens stop working at once). */
  revoked?: { has(sessionId: string): boolean };
}

/** The bearer token of a request, or undefined. */
export function bearerToken(req: Request): string | undefined {
  const header = req.headers.get("authorization");
  if (header === null) return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(header.trim());
  return match?.[1];
}

/**
 * Create the authentication middleware.
 * @example
 * ```ts
 * const adminOnly = authenticate({ tokens, role: "admin" });
 * ```
 */
export function authenticate(options: AuthOptions): Middleware {
  return async function authMiddleware(req, ctx, next) {
    const token = bearerToken(req);
    if (token === undefined) {
      const response = errorResponse(
        ctx,
        new AppError("UNAUTHENTICATED", "Missing bearer token in Authorization header"),
      );
      response.headers.set("www-authenticate", 'Bearer realm="aetherflow"');
      return response;
    }
    try {
      const user = await options.tokens.verify(token);
      if (user.sessionId && options.revoked?.has(user.sessionId)) {
        throw new AppError("UNAUTHENTICATED", "Session logged out");
      }
      if (options.role !== undefined && user.role !== options.role) {
        throw new AppError("PERMISSION_DENIED", `This route requires the ${options.role} role`);
      }
      ctx.user = user;
      ctx.log = ctx.log.with({ user_id: user.id });
    } catch (error) {
      const response = errorResponse(ctx, error);
      if (response.status === 401) {
        response.headers.set(
          "www-authenticate",
          'Bearer realm="aetherflow", error="invalid_token"',
        );
      }
      return response;
    }
    return next(req);
  };
}
