/**
 * Tokens for the client: the {@linkcode TokenProvider} interface the connection asks for an
 * access token, and {@linkcode RestAuth}, which logs in and refreshes through the gateway's
 * REST routes (`/api/v1/auth/login`, `/api/v1/auth/refresh`). Refresh tokens are rotated by
 * the server on every use and a reused one revokes the session, so refreshes are serialised:
 * concurrent callers share one request.
 *
 * @example
 * ```ts
 * import { RestAuth } from "./auth.ts";
 * const auth = new RestAuth("http://localhost:8080");
 * await auth.login("dev", "dev");
 * const { token, expiresAt } = await auth.getToken();
 * ```
 * @module
 */
import { type Clock, systemClock } from "./clock.ts";

/** An access token and its expiry (epoch ms). */
export interface AccessToken {
  token: string;
  expiresAt: number;
}

/** Where the client gets access tokens. */
export interface TokenProvider {
  /** A token that is valid now (refreshing first when it is about to expire). */
  getToken(): Promise<AccessToken>;
  /** A new token, even if the current one is still valid. */
  refresh(): Promise<AccessToken>;
}

/** The signed-in user. */
export interface AuthUser {
  id: string;
  username: string;
  role: string;
}

/** Raised when a REST call fails; status 401 means sign in again. */
export class ApiError extends Error {
  override name = "ApiError";
  /** HTTP status of the failed call (0 for network errors). */
  readonly status: number;
  constructor(message: string, status: number, options?: { cause?: unknown }) {
    super(message, options);
    this.status = status;
  }
}

/** Options for {@linkcode RestAuth}. */
export interface RestAuthOptions {
  /** fetch implementation (default globalThis.fetch). */
  fetch?: typeof fetch;
  clock?: Clock;
  /**
   * getToken() refreshes when less than this many ms are left, at most a third of the
   * token's lifetime (default 30 s).
   */
  marginMs?: number;
}

interface TokenResponse {
  access_token: string;
  expires_at: number;
  refresh_token: string;
  session_id: string;
  user: AuthUser;
}

/** Login and refresh over the gateway's REST API. */
export class RestAuth implements TokenProvider {
  #base: string;
  #fetch: typeof fetch;
  #clock: Clock;
  #marginMs: number;
  #access: AccessToken | undefined;
  #refreshToken: string | undefined;
  #refreshing: Promise<AccessToken> | undefined;
  #obtainedAt = 0;
  #user: AuthUser | undefined;
  #sessionId: string | undefined;

  /** `baseUrl` is the gateway origin, e.g. `http://localhost:8080` or `location.origin`. */
  constructor(baseUrl: string, options: RestAuthOptions = {}) {
    this.#base = baseUrl.replace(/\/+$/, "");
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.#clock = options.clock ?? systemClock;
    this.#marginMs = options.marginMs ?? 30_000;
  }

  /** The signed-in user, after login. */
  get user(): AuthUser | undefined {
    return this.#user;
  }

  /** The session id (the server de-duplicates resent ops per session). */
  get sessionId(): string | undefined {
    return this.#sessionId;
  }

  /** The gateway origin. */
  get baseUrl(): string {
    return this.#base;
  }

  /**
   * Sign in with a username and password.
   * @throws {ApiError} for wrong credentials or an unreachable gateway
   */
  async login(username: string, password: string): Promise<AuthUser> {
    const data = await this.#post("/api/v1/auth/login", { username, password });
    this.#take(data);
    return data.user;
  }

  /** @throws {ApiError} when not signed in or the refresh token is rejected */
  async getToken(): Promise<AccessToken> {
    const access = this.#access;
    const lifetime = access === undefined ? 0 : access.expiresAt - this.#obtainedAt;
    const margin = Math.min(this.#marginMs, lifetime / 3);
    if (access !== undefined && access.expiresAt - this.#clock.now() > margin) {
      return access;
    }
    return await this.refresh();
  }

  /** @throws {ApiError} when not signed in or the refresh token is rejected */
  refresh(): Promise<AccessToken> {
    this.#refreshing ??= (async () => {
      try {
        const refreshToken = this.#refreshToken;
        if (refreshToken === undefined) throw new ApiError("Not signed in", 401);
        const data = await this.#post("/api/v1/auth/refresh", { refresh_token: refreshToken });
        return this.#take(data);
      } finally {
        this.#refreshing = undefined;
      }
    })();
    return this.#refreshing;
  }

  /** An authenticated REST call; returns the envelope's `data`. */
  async request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const { token } = await this.getToken();
    return await this.#call<T>(method, path, body, token);
  }

  /** Sign out (revokes the session on the server; best effort). */
  async logout(): Promise<void> {
    try {
      if (this.#access !== undefined) {
        await this.#call("POST", "/api/v1/auth/logout", {}, this.#access.token);
      }
    } finally {
      this.#access = undefined;
      this.#refreshToken = undefined;
      this.#user = undefined;
    }
  }

  #take(data: TokenResponse): AccessToken {
    this.#access = { token: data.access_token, expiresAt: data.expires_at };
    this.#obtainedAt = this.#clock.now();
    this.#refreshToken = data.refresh_token;
    this.#user = data.user;
    this.#sessionId = data.session_id;
    return this.#access;
  }

  #post(path: string, body: unknown): Promise<TokenResponse> {
    return this.#call<TokenResponse>("POST", path, body, undefined);
  }

  async #call<T>(method: string, path: string, body: unknown, token: string | undefined) {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers["content-type"] = "application/json";
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    let response: Response;
    try {
      response = await this.#fetch(this.#base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiError(`Cannot reach ${this.#base}: ${String(error)}`, 0, { cause: error });
    }
    const envelope = await response.json().catch(() => null) as
      | { data?: T; message?: string }
      | null;
    if (!response.ok) {
      const message = envelope?.message ?? `HTTP ${response.status}`;
      throw new ApiError(message, response.status);
    }
    return envelope?.data as T;
  }
}
