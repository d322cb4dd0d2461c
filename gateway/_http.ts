/**
 * The small HTTP core: request context, handler and middleware types, composition,
 * envelope responses and validated JSON bodies.
 * @module
 */
import type { z } from "zod";
import { AppError, type Logger, okEnvelope, silentLogger } from "../kernel/mod.ts";

/** The authenticated caller. */
export interface AuthUser {
  /** User id (the token's `sub`). */
  id: string;
  /** Login name. */
  username: string;
  /** "admin" or "user". */
  role: string;
  /** Session id the access token belongs to (its `sid` claim). */
  sessionId: string;
  /** Access token expiry, epoch ms. */
  expiresAt: number;
}

/** Per-request state shared by middleware and handlers. */
export interface Context {
  /** The request id (echoed in `X-Request-ID` and the envelope). */
  requestId: string;
  /** Client IP as seen by the server. */
  ip: string;
  /** Request start, epoch ms (from the gateway clock). */
  startedAt: number;
  /** Absolute deadline, epoch ms; `Infinity` until the timeout middleware sets it. */
  deadline: number;
  /** Aborted when the request times out. */
  signal: AbortSignal;
  /** Set by the auth middleware. */
  user: AuthUser | undefined;
  /** Path parameters of the matched route. */
  params: Record<string, string>;
  /** Matched route pattern, e.g. `/api/v1/documents/:id` (for logs and metrics). */
  route: string;
  /** Logger bound to this request. */
  log: Logger;
  /** W3C trace context to pass to backends (set by the tracing middleware). */
  traceparent?: string | undefined;
}

/** A request handler. */
export type Handler = (req: Request, ctx: Context) => Promise<Response>;

/** A middleware: may answer itself or call `next()`. */
export type Middleware = (
  req: Request,
  ctx: Context,
  next: (req: Request) => Promise<Response>,
) => Promise<Response>;

/** Run `middlewares` in order around `handler`. */
export function compose(middlewares: readonly Middleware[], handler: Handler): Handler {
  return function composed(req, ctx) {
    const run = (index: number, current: Request): Promise<Response> => {
      const middleware = middlewares[index];
      if (middleware === undefined) return handler(current, ctx);
      return middleware(current, ctx, (next) => run(index + 1, next));
    };
    return run(0, req);
  };
}

/** A fresh context (tests and the gateway entry use it). */
export function newContext(init: Partial<Context> & { requestId: string }): Context {
  return {
    ip: "127.0.0.1",
    startedAt: Date.now(),
    deadline: Infinity,
    signal: new AbortController().signal,
    user: undefined,
    params: {},
    route: "",
    log: silentLogger,
    ...init,
  };
}

const JSON_HEADERS = { "content-type": "application/json; charset=utf-8" };

/** A success envelope response. */
export function okResponse(ctx: Context, data: unknown, status = 200): Response {
  return new Response(JSON.stringify(okEnvelope(data, ctx.requestId)), {
    status,
    headers: JSON_HEADERS,
  });
}

/** An error envelope response for anything thrown; INTERNAL errors are logged, not leaked. */
export function errorResponse(ctx: Context, error: unknown): Response {
  const appError = AppError.from(error);
  if (appError.status === "INTERNAL" || appError.status === "UNKNOWN") {
    ctx.log.error("Request failed", { error: appError.cause ?? appError, route: ctx.route });
  }
  return new Response(JSON.stringify(appError.toEnvelope(ctx.requestId)), {
    status: appError.httpStatus,
    headers: JSON_HEADERS,
  });
}

/**
 * Read and validate a JSON body against a strict zod schema.
 * @throws {AppError} INVALID_ARGUMENT for malformed JSON, wrong types or unknown fields,
 *   naming the field in the message and in `details.field`
 */
export async function readJson<S extends z.ZodType>(req: Request, schema: S): Promise<z.output<S>> {
  const text = await req.text();
  let value: unknown;
  if (text.trim() === "") {
    value = {};
  } else {
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new AppError("INVALID_ARGUMENT", `Malformed JSON body: ${(error as Error).message}`, {
        details: { field: null },
      });
    }
  }
  return validate(schema, value, "body");
}

/**
 * Validate `value` with `schema`; the first problem becomes an INVALID_ARGUMENT naming the field.
 * @throws {AppError} INVALID_ARGUMENT
 */
export function validate<S extends z.ZodType>(
  schema: S,
  value: unknown,
  where: string,
): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  if (issue.code === "unrecognized_keys") {
    const field = [...issue.path, issue.keys[0]].join(".");
    throw new AppError("INVALID_ARGUMENT", `Unknown field "${field}" in ${where}`, {
      details: { field },
    });
  }
  const field = issue.path.join(".") || "(root)";
  throw new AppError("INVALID_ARGUMENT", `Invalid field "${field}" in ${where}: ${issue.message}`, {
    details: { field },
  });
}

/** Query parameters as a plain object (for validation with a zod schema). */
export function queryObject(req: Request): Record<string, string> {
  return Object.fromEntries(new URL(req.url).searchParams);
}

/** gRPC call options from the request: its remaining budget and id. */
export function callOptions(
  ctx: Context,
): { deadline: number; requestId: string; traceparent?: string } {
  const options = { deadline: ctx.deadline, requestId: ctx.requestId };
  return ctx.traceparent ? { ...options, traceparent: ctx.traceparent } : options;
}

/** The authenticated user (routes behind auth only). */
export function userOf(ctx: Context): AuthUser {
  if (ctx.user === undefined) throw new AppError("UNAUTHENTICATED", "Authentication required");
  return ctx.user;
}
