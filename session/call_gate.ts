/**
 * Counts calls in flight so a server can drain them itself. Deno 2.9.6's `node:http2`
 * crashes the *receiving* process when an HTTP/2 GOAWAY arrives on a connection that has
 * carried a few hundred streams (nghttp2 assertion `stream->closed_next == NULL`,
 * denoland/deno#36788) — and grpc-js `tryShutdown()` sends exactly such a GOAWAY to every
 * client (as does Deno's http2 `server.close()`, so not even `unbind()` is safe). So the session
 * service drains without GOAWAY: it refuses new calls with UNAVAILABLE, waits here for the
 * calls in flight, and the process exits (the OS closes the sockets; clients see UNAVAILABLE
 * and reconnect).
 *
 * @example
 * ```ts
 * const gate = new CallGate();
 * if (!gate.enter()) return refuse();
 * try { await work(); } finally { gate.leave(); }
 * // at shutdown:
 * gate.close();
 * await gate.whenIdle(10_000);
 * ```
 * @module
 */

/** In-flight call counter with a closing state. */
export class CallGate {
  #inFlight = 0;
  #closed = false;
  #idle: Array<() => void> = [];

  /** Calls currently in flight. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** True once {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Admit a call; false once closed (the caller should answer UNAVAILABLE). */
  enter(): boolean {
    if (this.#closed) return false;
    this.#inFlight++;
    return true;
  }

  /** A call admitted by {@link enter} finished. */
  leave(): void {
    this.#inFlight--;
    if (this.#inFlight === 0) {
      for (const resolve of this.#idle.splice(0)) resolve();
    }
  }

  /** Refuse new calls from now on. */
  close(): void {
    this.#closed = true;
  }

  /** Resolves true when no call is in flight, or false after `timeoutMs`. */
  whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.#inFlight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.#idle = this.#idle.filter((waiter) => waiter !== done);
        resolve(false);
      }, timeoutMs);
      this.#idle.push(done);
    });
  }
}
