/**
 * Gateway configuration: a strict zod schema with defaults for every key, so the gateway
 * starts with no file at all. Load it with the kernel's `loadConfig(GatewayConfigSchema,
 * { service: "gateway" })`; environment overrides are `AETHERFLOW_GATEWAY_<KEY>`.
 *
 * @example
 * ```ts
 * const config = GatewayConfigSchema.parse({ port: 9090 });
 * config.auth.algorithm; // "HS256"
 * ```
 * @module
 */
import { z } from "zod";
import { etcdConfigSchema } from "../kernel/etcd_config.ts";

/** The secret used when none is configured; refused in production mode. */
export const DEFAULT_DEV_SECRET = "aetherflow-dev-secret-change-me-0123456789abcdef";

const BackendSchema = z.object({
  /** host:port of the service's gRPC listener (TCP), or of its Quantum listener (UDP). */
  address: z.string().min(1),
  /** "tcp": plain gRPC over TCP; "quantum": gRPC over Quantum, one Quantum connection each. */
  transport: z.enum(["tcp", "quantum"]).default("tcp"),
  /** A down required backend makes /health answer 503. */
  required: z.boolean().default(true),
  /** Retries for idempotent unary calls (0 disables). */
  retries: z.number().int().min(0).max(5).default(2),
  /** Deadline for calls made outside a request (health checks, streams setup), in ms. */
  defaultTimeoutMs: z.number().int().positive().default(5_000),
}).strict();

const RateSchema = z.object({
  /** Bucket capacity (burst). */
  capacity: z.number().int().positive(),
  /** Tokens added per second. */
  refillPerSecond: z.number().positive(),
}).strict();

/** The gateway's configuration schema. */
export const GatewayConfigSchema = z.object({
  /** "development" allows the default secret; "production" refuses it. */
  mode: z.enum(["development", "production"]).default("development"),
  hostname: z.string().default("0.0.0.0"),
  port: z.number().int().min(0).max(65535).default(8080),
  logLevel: z.enum(["debug", "info", "warn", "error"]).default("info"),
  /** Allowed CORS origins; "*" allows any. */
  corsOrigins: z.array(z.string()).default(["*"]),
  /**
   * Reverse proxies in front of the gateway (e.g. 1 behind a Kubernetes ingress). The client
   * IP for rate limits and logs is then taken from `X-Forwarded-For`, that many entries from
   * the right (entries further left are client-supplied and not trusted). 0: the peer address.
   */
  trustedProxyHops: z.number().int().min(0).max(10).default(0),
  /** Largest accepted request body, in bytes. */
  maxBodyBytes: z.number().int().positive().default(1_048_576),
  /** Default per-route timeout in ms (routes may set their own). */
  requestTimeoutMs: z.number().int().positive().default(10_000),
  rateLimit: z.object({
    perIp: RateSchema.default({ capacity: 200, refillPerSecond: 100 }),
    perUser: RateSchema.default({ capacity: 100, refillPerSecond: 50 }),
    /** Most buckets kept in memory per limiter. */
    maxKeys: z.number().int().positive().default(100_000),
  }).strict().default({
    perIp: { capacity: 200, refillPerSecond: 100 },
    perUser: { capacity: 100, refillPerSecond: 50 },
    maxKeys: 100_000,
  }),
  auth: z.object({
    issuer: z.string().default("aetherflow"),
    audience: z.string().default("aetherflow-api"),
    /** Signing and verification algorithm (pinned). */
    algorithm: z.enum(["HS256", "RS256", "EdDSA"]).default("HS256"),
    /** HS256 shared secret (>= 32 characters). */
    secret: z.string().min(32).default(DEFAULT_DEV_SECRET),
    /** PKCS#8 PEM private key for RS256/EdDSA issuing. */
    privateKeyPem: z.string().optional(),
    /** SPKI PEM public key for RS256/EdDSA verification. */
    publicKeyPem: z.string().optional(),
    /** Verify against an identity provider's JWKS instead of a local key. */
    jwksUrl: z.string().url().optional(),
    /** Access token lifetime in seconds. */
    accessTtlSeconds: z.number().int().positive().default(300),
    /** Refresh token (session) lifetime in seconds. */
    refreshTtlSeconds: z.number().int().positive().default(86_400),
    /** Allowed clock skew when checking exp/nbf, in seconds. */
    clockToleranceSeconds: z.number().int().min(0).max(300).default(5),
    /** Users file (JSON or YAML) with PBKDF2 password hashes. */
    usersFile: z.string().default("data/users.json"),
  }).strict().default({
    issuer: "aetherflow",
    audience: "aetherflow-api",
    algorithm: "HS256",
    secret: DEFAULT_DEV_SECRET,
    accessTtlSeconds: 300,
    refreshTtlSeconds: 86_400,
    clockToleranceSeconds: 5,
    usersFile: "data/users.json",
  }),
  session: BackendSchema.default({
    address: "127.0.0.1:50051",
    transport: "tcp",
    required: true,
    retries: 2,
    defaultTimeoutMs: 5_000,
  }),
  /**
   * Find session and statesync instances in etcd (registered by services on `storage: etcd`)
   * and balance calls over them with P2C + EWMA; `session.address` / `statesync.address` are
   * then unused.
   */
  discovery: z.object({
    enabled: z.boolean().default(false),
    /** Reach instances over their TCP or Quantum address. */
    transport: z.enum(["tcp", "quantum"]).default("tcp"),
    etcd: etcdConfigSchema.prefault({}),
  }).strict().prefault({}),
  statesync: BackendSchema.default({
    address: "127.0.0.1:50052",
    transport: "tcp",
    required: true,
    retries: 2,
    defaultTimeoutMs: 5_000,
  }),
  ws: z.object({
    /** Largest accepted WebSocket message, in bytes (bigger: close 1009). */
    maxMessageBytes: z.number().int().positive().default(65_536),
    /** Messages a connection may send per second (burst = 2x). */
    messagesPerSecond: z.number().positive().default(100),
    /**
     * Messages all connections of one user may send together per second (burst = 2x), on
     * top of the per-connection limit: reconnecting, or opening more sockets, does not buy a
     * flooding client a fresh budget.
     */
    userMessagesPerSecond: z.number().positive().default(500),
    /** Outgoing bytes queued for one connection before it is closed as a slow consumer. */
    maxQueuedBytes: z.number().int().positive().default(1_048_576),
    /** Server ping interval in ms. */
    pingIntervalMs: z.number().int().positive().default(25_000),
    /** Close when no pong arrives within this many ms of a ping. */
    pongTimeoutMs: z.number().int().positive().default(10_000),
    /** Close when the first message (auth) does not arrive within this many ms. */
    authTimeoutMs: z.number().int().positive().default(10_000),
    /**
     * Every this many ms, heartbeat the sessions of open sockets and report their traffic
     * counters to the session service (0 turns it off).
     */
    sessionSyncMs: z.number().int().min(0).default(30_000),
    /** Documents plus channels one connection may subscribe to. */
    maxSubscriptions: z.number().int().positive().default(100),
    /** Operations one connection may have awaiting statesync's result. */
    maxOpsInFlight: z.number().int().positive().default(256),
  }).strict().default({
    maxMessageBytes: 65_536,
    messagesPerSecond: 100,
    userMessagesPerSecond: 500,
    maxQueuedBytes: 1_048_576,
    pingIntervalMs: 25_000,
    pongTimeoutMs: 10_000,
    authTimeoutMs: 10_000,
    sessionSyncMs: 30_000,
    maxSubscriptions: 100,
    maxOpsInFlight: 256,
  }),
}).strict();

/** The validated gateway configuration. */
export type GatewayConfig = z.output<typeof GatewayConfigSchema>;

/**
 * Refuse configurations that must not run: the default secret in production mode, or an
 * asymmetric algorithm without a key.
 * @throws {RangeError} naming the problem
 */
export function assertUsableConfig(config: GatewayConfig): void {
  const auth = config.auth;
  if (
    config.mode === "production" && auth.algorithm === "HS256" && auth.secret === DEFAULT_DEV_SECRET
  ) {
    throw new RangeError(
      "Refusing to start in production mode with the default JWT secret: set auth.secret",
    );
  }
  if (auth.algorithm !== "HS256" && !auth.publicKeyPem && !auth.jwksUrl) {
    throw new RangeError(
      `auth.algorithm ${auth.algorithm} needs auth.publicKeyPem or auth.jwksUrl`,
    );
  }
}
