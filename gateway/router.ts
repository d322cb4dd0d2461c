/**
 * A minimal router: routes with a method, a path pattern (`/documents/:id`), an auth level
 * and an optional timeout; static segments win over parameters.
 * @module
 */
import type { Handler } from "./_http.ts";

/** Who may call a route. */
export type AuthLevel =
  /** Anyone. */
  | "none"
  /** Any user with a valid access token. */
  | "user"
  /** Users with the admin role. */
  | "admin";

/** One route. */
export interface Route {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  /** Path pattern with `:name` parameters. */
  path: string;
  auth: AuthLevel;
  /** Route budget in ms (default: the gateway's request timeout). */
  timeoutMs?: number;
  handler: Handler;
}

/** A route match. */
export interface Match {
  route: Route;
  params: Record<string, string>;
}

/** Routes matched by path, then method. */
export class Router {
  #routes: Array<{ route: Route; segments: string[] }> = [];

  constructor(routes: readonly Route[]) {
    for (const route of routes) this.#routes.push({ route, segments: route.path.split("/") });
    // Static segments before parameters, so /documents/stats beats /documents/:id.
    this.#routes.sort((a, b) => specificity(b.segments) - specificity(a.segments));
  }

  /** Every route (for the OpenAPI check). */
  get routes(): Route[] {
    return this.#routes.map((r) => r.route);
  }

  /**
   * Find the route for `method` and `pathname`: a match, "method" when the path exists with
   * other methods (with the allowed ones), or undefined when no path matches.
   */
  match(method: string, pathname: string): Match | { allowed: string[] } | undefined {
    const parts = pathname.split("/");
    const allowed = new Set<string>();
    for (const { route, segments } of this.#routes) {
      const params = matchSegments(segments, parts);
      if (params === undefined) continue;
      if (route.method === method || (method === "HEAD" && route.method === "GET")) {
        return { route, params };
      }
      allowed.add(route.method);
    }
    return allowed.size > 0 ? { allowed: [...allowed] } : undefined;
  }
}

function specificity(segments: string[]): number {
  return segments.reduce((score, s, i) => score + (s.startsWith(":") ? 0 : 1 / (i + 1)), 0);
}

function matchSegments(pattern: string[], parts: string[]): Record<string, string> | undefined {
  if (pattern.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const part = parts[i]!;
    if (p.startsWith(":")) {
      if (part === "") return undefined;
      try {
        params[p.slice(1)] = decodeURIComponent(part);
      } catch {
        return undefined;
      }
    } else if (p !== part) {
      return undefined;
    }
  }
  return params;
}
