/**
 * Access tokens: JWTs signed and verified with `jose`, algorithm pinned, `iss`, `aud`,
 * `exp`, `sub` and `sid` required, small clock tolerance. HS256 with a shared secret by
 * default; RS256/EdDSA with PEM keys, or verification against an identity provider's JWKS.
 * @module
 */
import {
  createRemoteJWKSet,
  type CryptoKey,
  importPKCS8,
  importSPKI,
  type JWTPayload,
  jwtVerify,
  SignJWT,
} from "jose";
import { AppError, newId } from "../kernel/mod.ts";
import type { AuthUser } from "./_http.ts";
import type { GatewayConfig } from "./config.ts";

/** Claims the gateway puts in an access token besides the registered ones. */
export interface AccessClaims {
  /** User id. */
  sub: string;
  /** Session id (the refresh family). */
  sid: string;
  /** Login name. */
  name: string;
  /** "admin" or "user". */
  role: string;
}

/** Issues and verifies access tokens. */
export interface TokenService {
  /** Sign an access token; returns it with its expiry (epoch ms). */
  issue(claims: AccessClaims, now?: number): Promise<{ token: string; expiresAt: number }>;
  /**
   * Verify a token and return its user.
   * @throws {AppError} UNAUTHENTICATED for any invalid, expired or foreign token
   */
  verify(token: string, now?: number): Promise<AuthUser>;
  /** Access token lifetime in seconds. */
  readonly ttlSeconds: number;
}

type Key = CryptoKey | Uint8Array;
type KeyResolver = Parameters<typeof jwtVerify>[1];

/**
 * Create the token service from the gateway's auth config.
 * @example
 * ```ts
 * const tokens = await createTokenService(config.auth);
 * const { token } = await tokens.issue({ sub: "u1", sid: "s1", name: "dev", role: "user" });
 * const user = await tokens.verify(token);
 * ```
 */
export async function createTokenService(auth: GatewayConfig["auth"]): Promise<TokenService> {
  const algorithm = auth.algorithm;
  let signingKey: Key | undefined;
  let verifyKey: KeyResolver;
  if (algorithm === "HS256") {
    signingKey = new TextEncoder().encode(auth.secret);
    verifyKey = signingKey;
  } else {
    signingKey = auth.privateKeyPem ? await importPKCS8(auth.privateKeyPem, algorithm) : undefined;
    if (auth.publicKeyPem) verifyKey = await importSPKI(auth.publicKeyPem, algorithm);
    else if (auth.jwksUrl) verifyKey = createRemoteJWKSet(new URL(auth.jwksUrl));
    else throw new RangeError(`auth.algorithm ${algorithm} needs publicKeyPem or jwksUrl`);
  }
  if (auth.jwksUrl && algorithm !== "HS256" && !auth.publicKeyPem) {
    verifyKey = createRemoteJWKSet(new URL(auth.jwksUrl));
  }
  const ttlSeconds = auth.accessTtlSeconds;
  return {
    ttlSeconds,
    async issue(claims, now = Date.now()) {
      if (signingKey === undefined) {
        throw new AppError("UNIMPLEMENTED", "This gateway verifies tokens but has no signing key");
      }
      const iat = Math.floor(now / 1000);
      const token = await new SignJWT({ sid: claims.sid, name: claims.name, role: claims.role })
        .setProtectedHeader({ alg: algorithm, typ: "JWT" })
        .setSubject(claims.sub)
        .setIssuer(auth.issuer)
        .setAudience(auth.audience)
        .setIssuedAt(iat)
        .setNotBefore(iat)
        .setExpirationTime(iat + ttlSeconds)
        .setJti(newId())
        .sign(signingKey);
      return { token, expiresAt: (iat + ttlSeconds) * 1000 };
    },
    async verify(token, now = Date.now()) {
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, verifyKey as Uint8Array, {
          algorithms: [algorithm],
          issuer: auth.issuer,
          audience: auth.audience,
          requiredClaims: ["iss", "aud", "exp", "sub"],
          clockTolerance: auth.clockToleranceSeconds,
          currentDate: new Date(now),
        }));
      } catch (error) {
        const code = (error as { code?: string }).code ?? "ERR_JWT_INVALID";
        throw new AppError("UNAUTHENTICATED", tokenErrorMessage(code), {
          cause: error,
          details: { reason: code },
        });
      }
      const { sub, sid, name, role, exp } = payload as JWTPayload & Partial<AccessClaims>;
      if (typeof sub !== "string" || typeof exp !== "number") {
        throw new AppError("UNAUTHENTICATED", "Invalid token: missing subject");
      }
      return {
        id: sub,
        sessionId: typeof sid === "string" ? sid : "",
        username: typeof name === "string" ? name : sub,
        role: typeof role === "string" ? role : "user",
        expiresAt: exp * 1000,
      };
    },
  };
}

function tokenErrorMessage(code: string): string {
  switch (code) {
    case "ERR_JWT_EXPIRED":
      return "Token expired";
    case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
      return "Invalid token: bad signature";
    case "ERR_JOSE_ALG_NOT_ALLOWED":
      return "Invalid token: algorithm not allowed";
    case "ERR_JWT_CLAIM_VALIDATION_FAILED":
      return "Invalid token: claim check failed";
    default:
      return "Invalid token";
  }
}
