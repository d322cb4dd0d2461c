/**
 * Stateless handshake cookies: the listener answers a SYN with
 * cookie = u32 time (seconds) ‖ HMAC-SHA256(secret, time ‖ address ‖ port ‖ connection id)[0..16]
 * and only allocates a connection when a client echoes a cookie that verifies for its own
 * address, connection id and a time within the validity window.
 *
 * @example
 * ```ts
 * const jar = new CookieJar();
 * const cookie = jar.issue(addr, id, performance.now());
 * jar.verify(cookie, addr, id, performance.now()); // true
 * ```
 * @module
 */
import { createHmac, randomBytes } from "node:crypto";

/** Cookie size in bytes: 4 bytes of time + 16 bytes of MAC. */
export const COOKIE_SIZE = 20;

/** Issues and verifies cookies with one random secret. */
export class CookieJar {
  #secret: Uint8Array;
  #validityMs: number;

  /**
   * A jar with its own secret.
   * @param options.secret HMAC key (default 32 random bytes)
   * @param options.validityMs how long a cookie verifies (default 10 s)
   */
  constructor(options: { secret?: Uint8Array; validityMs?: number } = {}) {
    this.#secret = options.secret ?? new Uint8Array(randomBytes(32));
    this.#validityMs = options.validityMs ?? 10_000;
  }

  /** A cookie for `addr` + `connectionId` issued at `now` (ms, any monotonic scale). */
  issue(addr: Deno.NetAddr, connectionId: string, now: number): Uint8Array {
    const seconds = Math.floor(now / 1000) >>> 0;
    const cookie = new Uint8Array(COOKIE_SIZE);
    new DataView(cookie.buffer).setUint32(0, seconds);
    cookie.set(this.#mac(seconds, addr, connectionId), 4);
    return cookie;
  }

  /** True when `cookie` was issued by this jar for `addr` + `connectionId` and is fresh. */
  verify(cookie: Uint8Array, addr: Deno.NetAddr, connectionId: string, now: number): boolean {
    if (cookie.length !== COOKIE_SIZE) return false;
    const seconds = new DataView(cookie.buffer, cookie.byteOffset, 4).getUint32(0);
    const age = Math.floor(now / 1000) - seconds;
    if (age < 0 || age * 1000 > this.#validityMs) return false;
    const expected = this.#mac(seconds, addr, connectionId);
    let diff = 0;
    for (let i = 0; i < 16; i++) diff |= expected[i]! ^ cookie[4 + i]!;
    return diff === 0;
  }

  #mac(seconds: number, addr: Deno.NetAddr, connectionId: string): Uint8Array {
    const hmac = createHmac("sha256", this.#secret);
    hmac.update(`${seconds}|${addr.hostname}|${addr.port}|${connectionId}`);
    return new Uint8Array(hmac.digest().subarray(0, 16));
  }
}
