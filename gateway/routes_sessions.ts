/**
 * Session routes: create, get, list, update, delete, heartbeat. Users see and change only
 * their own sessions; admins see all.
 * @module
 */
import { z } from "zod";
import { AppError, parseId } from "../kernel/mod.ts";
import { SessionState } from "../proto/gen/session.ts";
import {
  type AuthUser,
  callOptions,
  type Context,
  okResponse,
  queryObject,
  readJson,
  userOf,
  validate,
} from "./_http.ts";
import { parseSessionState, SESSION_STATES, sessionToJson } from "./_convert.ts";
import type { GatewayDeps } from "./app.ts";
import type { Route } from "./router.ts";

const Metadata = z.record(z.string().max(128), z.string().max(1024));

const CreateSchema = z.object({
  ttl_seconds: z.number().int().min(1).max(30 * 24 * 3600).optional(),
  connection_id: z.string().optional(),
  metadata: Metadata.optional(),
}).strict();

const UpdateSchema = z.object({
  state: z.enum(["active", "idle"]).optional(),
  metadata: Metadata.optional(),
}).strict();

const HeartbeatSchema = z.object({
  ttl_seconds: z.number().int().min(1).max(30 * 24 * 3600).optional(),
}).strict();

const ListQuery = z.object({
  user_id: z.string().optional(),
  state: z.enum(SESSION_STATES).optional(),
  page_size: z.coerce.number().int().min(1).max(1000).optional(),
  page_token: z.string().optional(),
}).strict();

/** The session routes. */
export function sessionRoutes(deps: GatewayDeps): Route[] {
  const sessions = deps.backends.session;

  async function owned(ctx: Context, user: AuthUser) {
    const id = parseId(ctx.params.id, "session id");
    const session = await sessions.getSession(
      { selector: { $case: "sessionId", value: id } },
      callOptions(ctx),
    );
    if (session.userId !== user.id && user.role !== "admin") {
      throw new AppError("NOT_FOUND", "Session not found"); // do not reveal others' sessions
    }
    return session;
  }

  return [
    {
      method: "POST",
      path: "/api/v1/sessions",
      auth: "user",
      async handler(req, ctx) {
        const user = userOf(ctx);
        const body = await readJson(req, CreateSchema);
        const created = await sessions.createSession({
          userId: user.id,
          connectionId: body.connection_id ?? "",
          clientIp: ctx.ip === "unknown" ? "" : ctx.ip,
          clientPort: 0,
          serverAddress: "",
          ttlSeconds: body.ttl_seconds ?? 0,
          metadata: body.metadata ?? {},
        }, callOptions(ctx));
        return okResponse(
          ctx,
          { session: sessionToJson(created.session!), token: created.token },
          201,
        );
      },
    },
    {
      method: "GET",
      path: "/api/v1/sessions",
      auth: "user",
      async handler(req, ctx) {
        const user = userOf(ctx);
        const query = validate(ListQuery, queryObject(req), "query");
        if (query.user_id !== undefined && query.user_id !== user.id && user.role !== "admin") {
          throw new AppError("PERMISSION_DENIED", "Only admins may list other users' sessions");
        }
        const result = await sessions.listSessions({
          userId: user.role === "admin" ? query.user_id ?? "" : user.id,
          state: query.state
            ? parseSessionState(query.state)
            : SessionState.SESSION_STATE_UNSPECIFIED,
          createdAfter: 0,
          createdBefore: 0,
          pageSize: query.page_size ?? 0,
          pageToken: query.page_token ?? "",
        }, callOptions(ctx));
        return okResponse(ctx, {
          sessions: result.sessions.map(sessionToJson),
          next_page_token: result.nextPageToken,
          total_count: result.totalCount,
        });
      },
    },
    {
      method: "GET",
      path: "/api/v1/sessions/:id",
      auth: "user",
      async handler(_req, ctx) {
        return okResponse(ctx, sessionToJson(await owned(ctx, userOf(ctx))));
      },
    },
    {
      method: "PATCH",
      path: "/api/v1/sessions/:id",
      auth: "user",
      async handler(req, ctx) {
        const body = await readJson(req, UpdateSchema);
        const session = await owned(ctx, userOf(ctx));
        const mask: string[] = [];
        if (body.state !== undefined) mask.push("state");
        if (body.metadata !== undefined) mask.push("metadata");
        if (mask.length === 0) throw new AppError("INVALID_ARGUMENT", "Nothing to update");
        const updated = await sessions.updateSession({
          sessionId: session.id,
          updateMask: mask,
          state: body.state
            ? parseSessionState(body.state)
            : SessionState.SESSION_STATE_UNSPECIFIED,
          metadata: body.metadata ?? {},
          stats: undefined,
          connectionId: "",
          serverAddress: "",
        }, callOptions(ctx));
        return okResponse(ctx, sessionToJson(updated));
      },
    },
    {
      method: "DELETE",
      path: "/api/v1/sessions/:id",
      auth: "user",
      async handler(_req, ctx) {
        const session = await owned(ctx, userOf(ctx));
        await sessions.deleteSession({ sessionId: session.id }, callOptions(ctx));
        deps.revoked.add(session.id);
        deps.hub.closeSession(session.id);
        return okResponse(ctx, { deleted: true });
      },
    },
    {
      method: "POST",
      path: "/api/v1/sessions/:id/heartbeat",
      auth: "user",
      async handler(req, ctx) {
        const body = await readJson(req, HeartbeatSchema);
        const session = await owned(ctx, userOf(ctx));
        const result = await sessions.heartbeat(
          { sessionId: session.id, ttlSeconds: body.ttl_seconds ?? 0 },
          callOptions(ctx),
        );
        return okResponse(ctx, sessionToJson(result.session!));
      },
    },
  ];
}
