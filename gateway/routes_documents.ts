/**
 * Document routes: CRUD, apply operation, history, locks, conflicts and stats. Reads of a
 * document fall back to the last copy this gateway served to the same user when statesync
 * is unavailable (breaker open or down), marked `stale: true`; other calls fail fast (503).
 * @module
 */
import { z } from "zod";
import { AppError, newId, parseId } from "../kernel/mod.ts";
import type { Document } from "../proto/gen/statesync.ts";
import {
  callOptions,
  type Context,
  okResponse,
  queryObject,
  readJson,
  userOf,
  validate,
} from "./_http.ts";
import {
  CONFLICT_STRATEGIES,
  conflictToJson,
  DOCUMENT_STATES,
  DOCUMENT_TYPES,
  documentToJson,
  lockToJson,
  OperationInputSchema,
  operationToJson,
  parseConflictSide,
  parseConflictStrategy,
  parseDocumentState,
  parseDocumentType,
  PathSchema,
  toProtoComponent,
  toProtoPath,
} from "./_convert.ts";
import type { GatewayDeps } from "./app.ts";
import type { Route } from "./router.ts";

const Metadata = z.record(z.string().max(128), z.string().max(1024));
const PermissionsSchema = z.object({
  editors: z.array(z.string()).max(1000).default([]),
  viewers: z.array(z.string()).max(1000).default([]),
  public_read: z.boolean().default(false),
}).strict();

const CreateSchema = z.object({
  name: z.string().min(1).max(256),
  type: z.enum(DOCUMENT_TYPES).default("json"),
  content: z.unknown().optional(),
  permissions: PermissionsSchema.optional(),
  metadata: Metadata.optional(),
  conflict_strategy: z.enum(CONFLICT_STRATEGIES).optional(),
}).strict();

const UpdateSchema = z.object({
  name: z.string().min(1).max(256).optional(),
  state: z.enum(["active", "archived"]).optional(),
  permissions: PermissionsSchema.optional(),
  metadata: Metadata.optional(),
  conflict_strategy: z.enum(CONFLICT_STRATEGIES).optional(),
}).strict();

const ListQuery = z.object({
  owner_id: z.string().optional(),
  type: z.enum(DOCUMENT_TYPES).optional(),
  state: z.enum(DOCUMENT_STATES).optional(),
  page_size: z.coerce.number().int().min(1).max(1000).optional(),
  page_token: z.string().optional(),
}).strict();

const GetQuery = z.object({ at_version: z.coerce.number().int().min(0).optional() }).strict();

const HistoryQuery = z.object({
  from_version: z.coerce.number().int().min(0).optional(),
  to_version: z.coerce.number().int().min(0).optional(),
  page_size: z.coerce.number().int().min(1).max(1000).optional(),
  page_token: z.string().optional(),
}).strict();

const ApplySchema = OperationInputSchema.extend({ session_id: z.string().optional() }).strict();

const LockSchema = z.object({
  path: PathSchema.default([]),
  ttl_ms: z.number().int().min(1).max(3_600_000).optional(),
  wait_ms: z.number().int().min(0).max(30_000).optional(),
  lock_id: z.string().optional(),
}).strict();

const ConflictsQuery = z.object({
  include_resolved: z.enum(["true", "false"]).optional(),
  page_size: z.coerce.number().int().min(1).max(1000).optional(),
  page_token: z.string().optional(),
}).strict();

const ResolveSchema = z.union([
  z.object({ side: z.enum(["applied", "incoming"]) }).strict(),
  z.object({ value: z.unknown().refine((v) => v !== undefined, "expected a JSON value") }).strict(),
]);

/** Most documents kept for the stale-read fallback. */
const CACHE_LIMIT = 1_000;

/** The document routes. */
export function documentRoutes(deps: GatewayDeps): Route[] {
  const statesync = deps.backends.statesync;
  const cache = new Map<string, Document>();

  function remember(key: string, doc: Document): void {
    cache.delete(key);
    cache.set(key, doc);
    if (cache.size > CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  }

  const docId = (ctx: Context) => parseId(ctx.params.id, "document id");

  return [
    {
      method: "GET",
      path: "/api/v1/documents/stats",
      auth: "user",
      async handler(_req, ctx) {
        const stats = await statesync.getStats({}, callOptions(ctx));
        return okResponse(ctx, {
          documents: stats.documents,
          operations: stats.operations,
          conflicts: stats.conflicts,
          open_conflicts: stats.openConflicts,
          subscribers: stats.subscribers,
          active_users: stats.activeUsers,
          locks: stats.locks,
          transforms: stats.transforms,
        });
      },
    },
    {
      method: "POST",
      path: "/api/v1/documents",
      auth: "user",
      async handler(req, ctx) {
        const body = await readJson(req, CreateSchema);
        const doc = await statesync.createDocument({
          actorId: userOf(ctx).id,
          name: body.name,
          type: parseDocumentType(body.type),
          contentJson: body.content === undefined ? "" : JSON.stringify(body.content),
          permissions: body.permissions
            ? {
              editors: body.permissions.editors,
              viewers: body.permissions.viewers,
              publicRead: body.permissions.public_read,
            }
            : undefined,
          metadata: body.metadata ?? {},
          conflictStrategy: parseConflictStrategy(body.conflict_strategy),
        }, callOptions(ctx));
        return okResponse(ctx, documentToJson(doc), 201);
      },
    },
    {
      method: "GET",
      path: "/api/v1/documents",
      auth: "user",
      async handler(req, ctx) {
        const query = validate(ListQuery, queryObject(req), "query");
        const result = await statesync.listDocuments({
          actorId: userOf(ctx).id,
          ownerId: query.owner_id ?? "",
          type: parseDocumentType(query.type),
          state: parseDocumentState(query.state),
          pageSize: query.page_size ?? 0,
          pageToken: query.page_token ?? "",
        }, callOptions(ctx));
        return okResponse(ctx, {
          documents: result.documents.map(documentToJson),
          next_page_token: result.nextPageToken,
        });
      },
    },
    {
      method: "GET",
      path: "/api/v1/documents/:id",
      auth: "user",
      async handler(req, ctx) {
        const id = docId(ctx);
        const query = validate(GetQuery, queryObject(req), "query");
        const actorId = userOf(ctx).id;
        const key = `${actorId}:${id}`;
        try {
          const doc = await statesync.getDocument(
            { actorId, documentId: id, atVersion: query.at_version ?? 0 },
            callOptions(ctx),
          );
          if (!query.at_version) remember(key, doc);
          return okResponse(ctx, { ...documentToJson(doc), stale: false });
        } catch (error) {
          const appError = AppError.from(error);
          const cached = cache.get(key);
          if (appError.status === "UNAVAILABLE" && cached !== undefined && !query.at_version) {
            ctx.log.warn("Serving cached document", { document_id: id, reason: appError.message });
            return okResponse(ctx, { ...documentToJson(cached), stale: true });
          }
          throw appError;
        }
      },
    },
    {
      method: "PATCH",
      path: "/api/v1/documents/:id",
      auth: "user",
      async handler(req, ctx) {
        const id = docId(ctx);
        const body = await readJson(req, UpdateSchema);
        const mask = (["name", "state", "permissions", "metadata", "conflict_strategy"] as const)
          .filter((field) => body[field] !== undefined);
        if (mask.length === 0) throw new AppError("INVALID_ARGUMENT", "Nothing to update");
        const doc = await statesync.updateDocument({
          actorId: userOf(ctx).id,
          documentId: id,
          updateMask: [...mask],
          name: body.name ?? "",
          state: parseDocumentState(body.state),
          permissions: body.permissions
            ? {
              editors: body.permissions.editors,
              viewers: body.permissions.viewers,
              publicRead: body.permissions.public_read,
            }
            : undefined,
          metadata: body.metadata ?? {},
          conflictStrategy: parseConflictStrategy(body.conflict_strategy),
        }, callOptions(ctx));
        return okResponse(ctx, documentToJson(doc));
      },
    },
    {
      method: "DELETE",
      path: "/api/v1/documents/:id",
      auth: "user",
      async handler(_req, ctx) {
        const id = docId(ctx);
        await statesync.deleteDocument(
          { actorId: userOf(ctx).id, documentId: id },
          callOptions(ctx),
        );
        for (const key of cache.keys()) if (key.endsWith(`:${id}`)) cache.delete(key);
        return okResponse(ctx, { deleted: true });
      },
    },
    {
      method: "POST",
      path: "/api/v1/documents/:id/operations",
      auth: "user",
      async handler(req, ctx) {
        const id = docId(ctx);
        const user = userOf(ctx);
        const body = await readJson(req, ApplySchema);
        const result = await statesync.applyOperation({
          actorId: user.id,
          operation: {
            id: "",
            documentId: id,
            baseVersion: body.base_version,
            version: 0,
            authorId: user.id,
            sessionId: body.session_id ?? (user.sessionId || user.id),
            clientOpId: body.client_op_id ?? newId(),
            timestamp: 0,
            components: body.components.map(toProtoComponent),
          },
        }, callOptions(ctx));
        return okResponse(ctx, {
          operation: operationToJson(result.operation),
          version: result.version,
          duplicate: result.duplicate,
          held: result.held,
          conflicts: result.conflicts.map(conflictToJson),
        });
      },
    },
    {
      method: "GET",
      path: "/api/v1/documents/:id/history",
      auth: "user",
      async handler(req, ctx) {
        const id = docId(ctx);
        const query = validate(HistoryQuery, queryObject(req), "query");
        const result = await statesync.getOperationHistory({
          actorId: userOf(ctx).id,
          documentId: id,
          fromVersion: query.from_version ?? 0,
          toVersion: query.to_version ?? 0,
          pageSize: query.page_size ?? 0,
          pageToken: query.page_token ?? "",
        }, callOptions(ctx));
        return okResponse(ctx, {
          operations: result.operations.map(operationToJson),
          next_page_token: result.nextPageToken,
        });
      },
    },
    {
      method: "POST",
      path: "/api/v1/documents/:id/locks",
      auth: "user",
      timeoutMs: 35_000,
      async handler(req, ctx) {
        const id = docId(ctx);
        const user = userOf(ctx);
        const body = await readJson(req, LockSchema);
        const lock = await statesync.acquireLock({
          actorId: user.id,
          documentId: id,
          path: toProtoPath(body.path),
          sessionId: user.sessionId || user.id,
          ttlMs: body.ttl_ms ?? 0,
          lockId: body.lock_id ?? "",
          waitMs: body.wait_ms ?? 0,
        }, callOptions(ctx));
        return okResponse(ctx, lockToJson(lock), body.lock_id ? 200 : 201);
      },
    },
    {
      method: "DELETE",
      path: "/api/v1/documents/:id/locks/:lockId",
      auth: "user",
      async handler(_req, ctx) {
        const id = docId(ctx);
        const lockId = parseId(ctx.params.lockId, "lock id");
        await statesync.releaseLock(
          { actorId: userOf(ctx).id, documentId: id, lockId },
          callOptions(ctx),
        );
        return okResponse(ctx, { released: true });
      },
    },
    {
      method: "GET",
      path: "/api/v1/documents/:id/conflicts",
      auth: "user",
      async handler(req, ctx) {
        const id = docId(ctx);
        const query = validate(ConflictsQuery, queryObject(req), "query");
        const result = await statesync.listConflicts({
          actorId: userOf(ctx).id,
          documentId: id,
          includeResolved: query.include_resolved === "true",
          pageSize: query.page_size ?? 0,
          pageToken: query.page_token ?? "",
        }, callOptions(ctx));
        return okResponse(ctx, {
          conflicts: result.conflicts.map(conflictToJson),
          next_page_token: result.nextPageToken,
        });
      },
    },
    {
      method: "POST",
      path: "/api/v1/documents/:id/conflicts/:conflictId/resolve",
      auth: "user",
      async handler(req, ctx) {
        const id = docId(ctx);
        const conflictId = parseId(ctx.params.conflictId, "conflict id");
        const body = await readJson(req, ResolveSchema);
        const result = await statesync.resolveConflict({
          actorId: userOf(ctx).id,
          documentId: id,
          conflictId,
          resolution: "side" in body
            ? { $case: "side", value: parseConflictSide(body.side) }
            : { $case: "valueJson", value: JSON.stringify(body.value) },
        }, callOptions(ctx));
        return okResponse(ctx, {
          conflict: result.conflict ? conflictToJson(result.conflict) : null,
          operation: operationToJson(result.operation),
        });
      },
    },
  ];
}
