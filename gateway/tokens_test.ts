import assert from "node:assert/strict";
import { exportJWK, exportPKCS8, exportSPKI, generateKeyPair, SignJWT } from "jose";
import { AppError } from "../kernel/mod.ts";
import { assertUsableConfig, DEFAULT_DEV_SECRET } from "./config.ts";
import { createTokenService } from "./tokens.ts";
import { testConfig } from "./_testing.ts";

const claims = { sub: "user-1", sid: "session-1", name: "alice", role: "user" };

function b64url(text: string): string {
  return btoa(text).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

async function rejects(promise: Promise<unknown>, reason: RegExp): Promise<void> {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof AppError);
    assert.equal(error.status, "UNAUTHENTICATED");
    assert.match(String((error.details as { reason?: string }).reason ?? error.message), reason);
    return true;
  });
}

Deno.test("tokens: a freshly issued HS256 token verifies to its user", async () => {
  const tokens = await createTokenService(testConfig().auth);
  const { token, expiresAt } = await tokens.issue(claims);
  const user = await tokens.verify(token);
  assert.deepEqual(
    { id: user.id, sessionId: user.sessionId, username: user.username, role: user.role },
    { id: "user-1", sessionId: "session-1", username: "alice", role: "user" },
  );
  assert.equal(user.expiresAt, expiresAt);
});

Deno.test("tokens: alg none is rejected", async () => {
  const tokens = await createTokenService(testConfig().auth);
  const { token } = await tokens.issue(claims);
  const payload = token.split(".")[1]!;
  const unsigned = `${b64url(JSON.stringify({ alg: "none", typ: "JWT" }))}.${payload}.`;
  await rejects(tokens.verify(unsigned), /ALG|JWS|INVALID/);
});

Deno.test("tokens: a token signed with the wrong key is rejected", async () => {
  const tokens = await createTokenService(testConfig().auth);
  const other = await createTokenService(
    testConfig({ auth: { secret: "another-secret-another-secret-0123456789" } }).auth,
  );
  const { token } = await other.issue(claims);
  await rejects(tokens.verify(token), /SIGNATURE/);
});

Deno.test("tokens: an expired token is rejected beyond the clock tolerance only", async () => {
  const tokens = await createTokenService(
    testConfig({ auth: { accessTtlSeconds: 60, clockToleranceSeconds: 5 } }).auth,
  );
  const now = Date.now();
  const { token } = await tokens.issue(claims, now);
  await tokens.verify(token, now + 63_000); // within tolerance
  await rejects(tokens.verify(token, now + 70_000), /EXPIRED/);
});

Deno.test("tokens: wrong audience and wrong issuer are rejected", async () => {
  const tokens = await createTokenService(testConfig().auth);
  const otherAud = await createTokenService(
    testConfig({ auth: { audience: "someone-else" } }).auth,
  );
  const otherIss = await createTokenService(testConfig({ auth: { issuer: "evil" } }).auth);
  await rejects(tokens.verify((await otherAud.issue(claims)).token), /CLAIM/);
  await rejects(tokens.verify((await otherIss.issue(claims)).token), /CLAIM/);
});

Deno.test("tokens: a tampered payload fails the signature check", async () => {
  const tokens = await createTokenService(testConfig().auth);
  const { token } = await tokens.issue(claims);
  const [header, payload, signature] = token.split(".");
  const decoded = JSON.parse(atob(payload!.replaceAll("-", "+").replaceAll("_", "/")));
  decoded.role = "admin";
  const forged = `${header}.${b64url(JSON.stringify(decoded))}.${signature}`;
  await rejects(tokens.verify(forged), /SIGNATURE/);
});

Deno.test("tokens: a token without exp is rejected (exp is required)", async () => {
  const config = testConfig();
  const tokens = await createTokenService(config.auth);
  const key = new TextEncoder().encode(config.auth.secret);
  const noExp = await new SignJWT({ sid: "s" }).setProtectedHeader({ alg: "HS256" })
    .setSubject("u").setIssuer(config.auth.issuer).setAudience(config.auth.audience)
    .sign(key);
  await rejects(tokens.verify(noExp), /CLAIM|exp/);
});

Deno.test("tokens: a token with another algorithm than the pinned one is rejected", async () => {
  const config = testConfig();
  const tokens = await createTokenService(config.auth);
  const key = new TextEncoder().encode(config.auth.secret);
  const hs512 = await new SignJWT({ sid: "s" }).setProtectedHeader({ alg: "HS512" })
    .setSubject("u").setIssuer(config.auth.issuer).setAudience(config.auth.audience)
    .setExpirationTime("5m").sign(key);
  await rejects(tokens.verify(hs512), /ALG/);
});

Deno.test("tokens: EdDSA and RS256 key pairs issue and verify", async () => {
  for (const alg of ["EdDSA", "RS256"] as const) {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
    const auth = testConfig({
      auth: {
        algorithm: alg,
        privateKeyPem: await exportPKCS8(privateKey),
        publicKeyPem: await exportSPKI(publicKey),
      },
    }).auth;
    const tokens = await createTokenService(auth);
    const { token } = await tokens.issue(claims);
    assert.equal((await tokens.verify(token)).id, "user-1");
    const hs = await createTokenService(testConfig().auth);
    await rejects(tokens.verify((await hs.issue(claims)).token), /ALG/);
  }
});

Deno.test("tokens: verification against a JWKS URL", async () => {
  const { privateKey, publicKey } = await generateKeyPair("EdDSA", { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "EdDSA" };
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => Response.json({ keys: [jwk] }),
  );
  const auth = testConfig({
    auth: {
      algorithm: "EdDSA",
      jwksUrl: `http://127.0.0.1:${server.addr.port}/jwks.json`,
    },
  }).auth;
  const tokens = await createTokenService(auth);
  const token = await new SignJWT({ sid: "s", role: "user" })
    .setProtectedHeader({ alg: "EdDSA", kid: "k1" }).setSubject("idp-user")
    .setIssuer(auth.issuer).setAudience(auth.audience).setExpirationTime("5m")
    .sign(privateKey);
  assert.equal((await tokens.verify(token)).id, "idp-user");
  await assert.rejects(tokens.issue(claims), /no signing key/);
});

Deno.test("config: production mode refuses the default secret", () => {
  assert.throws(
    () => assertUsableConfig(testConfig({ mode: "production" })),
    /default JWT secret/,
  );
  assertUsableConfig(testConfig({ mode: "development" }));
  assertUsableConfig(
    testConfig({ mode: "production", auth: { secret: "a-real-secret-a-real-secret-0123456789" } }),
  );
  assert.notEqual(testConfig().auth.secret, "");
  assert.equal(testConfig().auth.secret, DEFAULT_DEV_SECRET);
});
