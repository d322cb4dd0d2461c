/**
 * Token-bucket rate limiting per key (client IP, user id, WebSocket connection), and a
 * middleware that answers 429 with `Retry-After` and the IETF RateLimit header fields
 * (`RateLimit-Policy: "ip";q=200;w=2`, `RateLimit: "ip";r=17;t=1`).
 * @module
 */
import { AppError } from "../kernel/mod.ts";
import { type Context, errorResponse, type Middleware } from "./_http.ts";

/** Outcome of {@link TokenBuckets.take}. */
export interface TakeResult {
  /** True when a token was taken. */
  allowed: boolean;
  /** Whole tokens left. */
  remaining: number;
  /** Seconds until a token is available (0 when allowed). */
  retryAfterSeconds: number;
  /** Seconds until the bucket is full again. */
  resetSeconds: number;
}

/** Options for {@link TokenBuckets}. */
export interface TokenBucketOptions {
  /** Bucket size (burst). */
  capacity: number;
  /** Tokens added per second. */
  refillPerSecond: number;
  /** Most buckets kept; beyond it the least recently created full ones are dropped. */
  maxKeys?: number;
}

/**
 * A set of token buckets by key. Time is passed in (`now`, ms), so tests drive it.
 * @example
 * ```ts
 * const buckets = new TokenBuckets({ capacity: 10, refillPerSecond: 5 });
 * buckets.take("1.2.3.4", performance.now()).allowed;
 * ```
 */
export class TokenBuckets {
  readonly capacity: number;
  readonly refillPerSecond: number;
  #maxKeys: number;
  #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(options: TokenBucketOptions) {
    if (!(options.capacity >= 1)) throw new RangeError("capacity must be >= 1");
    if (!(options.refillPerSecond > 0)) throw new RangeError("refillPerSecond must be > 0");
    this.capacity = options.capacity;
    this.refillPerSecond = options.refillPerSecond;
    this.#maxKeys = options.maxKeys ?? 100_000;
  }

  /** Number of buckets held. */
  get size(): number {
    return this.#buckets.size;
  }

  /** Forget `key`'s bucket (a closed connection's, say). */
  delete(key: string): void {
    this.#buckets.delete(key);
  }

  /** Take `cost` tokens from `key`'s bucket at time `now` (ms). */
  take(key: string, now: number, cost = 1): TakeResult {
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#maxKeys) this.#evict(now);
      bucket = { tokens: this.capacity, at: now };
      this.#buckets.set(key, bucket);
    } else {
      const elapsed = Math.max(0, now - bucket.at) / 1000;
      bucket.tokens = Math.min(this.capacity, bucket.tokens + elapsed * this.refillPerSecond);
      bucket.at = now;
    }
    const allowed = bucket.tokens >= cost;
    if (allowed) bucket.tokens -= cost;
    const missing = allowed ? 0 : cost - bucket.tokens;
    return {
      allowed,
      remaining: Math.floor(bucket.tokens),
      retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil(missing / this.refillPerSecond)),
      resetSeconds: Math.ceil((this.capacity - bucket.tokens) / this.refillPerSecond),
    };
  }

  #evict(now: number): void {
    for (const [key, bucket] of this.#buckets) {
      const tokens = bucket.tokens + (Math.max(0, now - bucket.at) / 1000) * this.refillPerSecond;
      if (tokens >= this.capacity) this.#buckets.delete(key);
    }
    // Still full of active clients: drop the oldest to keep memory bounded.
    while (this.#buckets.size >= this.#maxKeys) {
      const oldest = this.#buckets.keys().next().value;
      if (oldest === undefined) break;
      this.#buckets.delete(oldest);
    }
  }
}

/** Options for {@link rateLimit}. */
export interface RateLimitOptions {
  /** Policy name in the headers, e.g. "ip" or "user". */
  name: string;
  buckets: TokenBuckets;
  /** The bucket key for a request; `undefined` skips limiting (e.g. no user yet). */
  key: (req: Request, ctx: Context) => string | undefined;
  /** Monotonic clock in ms (default `performance.now`). */
  now?: () => number;
}

/**
 * Create a rate limiting middleware.
 * @example
 * ```ts
 * const perIp = rateLimit({ name: "ip", buckets, key: (_req, ctx) => ctx.ip });
 * ```
 */
export function rateLimit(options: RateLimitOptions): Middleware {
  const now = options.now ?? (() => performance.now());
  const { buckets, name } = options;
  const windowSeconds = Math.max(1, Math.ceil(buckets.capacity / buckets.refillPerSecond));
  const policy = `"${name}";q=${buckets.capacity};w=${windowSeconds}`;
  return async function rateLimitMiddleware(req, ctx, next) {
    const key = options.key(req, ctx);
    if (key === undefined) return next(req);
    const result = buckets.take(key, now());
    const state = `"${name}";r=${result.remaining};t=${result.resetSeconds}`;
    if (!result.allowed) {
      const response = errorResponse(
        ctx,
        new AppError("RESOURCE_EXHAUSTED", `Rate limit exceeded (${name}), retry later`, {
          details: { policy: name, retry_after_seconds: result.retryAfterSeconds },
        }),
      );
      response.headers.set("retry-after", String(result.retryAfterSeconds));
      response.headers.set("ratelimit-policy", policy);
      response.headers.set("ratelimit", state);
      return response;
    }
    const response = await next(req);
    response.headers.append("ratelimit-policy", policy);
    response.headers.append("ratelimit", state);
    return response;
  };
}
