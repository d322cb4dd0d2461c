/**
 * Draining a grpc-js server without sending an HTTP/2 GOAWAY. Deno 2.9.6's `node:http2`
 * crashes the *receiving* process when a GOAWAY arrives on a connection that has carried a
 * few hundred streams (nghttp2 assertion `stream->closed_next == NULL`, denoland/deno#36788)
 * — and grpc-js `tryShutdown()` sends exactly such a GOAWAY to every client (as does Deno's
 * http2 `server.close()`, so not even `unbind()` is safe). So a service drains by itself:
 * stop accepting (see `listenGuarded` in `grpc_guard.ts`), refuse new calls with
 * UNAVAILABLE, wait for the calls in flight, linger while their responses are written, then
 * exit (the OS closes the sockets; clients see UNAVAILABLE and reconnect).
 *
 * @example
 * ```ts
 * const gate = new CallGate();
 * server.addService(Definition, gateHandlers(Definition, handlers, gate));
 * // at shutdown:
 * gate.close();
 * await gate.whenIdle(10_000);
 * ```
 * @module
 */
import { AppError } from "./errors.ts";

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

// deno-lint-ignore no-explicit-any
type AnyHandler = (...args: any[]) => unknown;

/** The shape of a grpc-js service definition entry this module reads. */
interface MethodDefinition {
  readonly responseStream: boolean;
}

interface StreamCall {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  emit(event: string, ...args: unknown[]): boolean;
}

/** Options for {@link gateHandlers}. */
export interface GateHandlersOptions {
  /** The UNAVAILABLE message for refused calls (default "Service is shutting down"). */
  message?: string;
}

/**
 * Wrap every handler of a grpc-js handler table so calls pass through `gate`: once the gate
 * is closed a new call ends at once with UNAVAILABLE; an admitted call leaves the gate when
 * its callback runs (unary, client streaming) or when it finishes, fails or is cancelled
 * (server streaming, bidirectional).
 * @throws {TypeError} when a handler has no method in `definition`
 * @example
 * ```ts
 * server.addService(pb.StateSyncServiceService, gateHandlers(pb.StateSyncServiceService, handlers, gate));
 * ```
 */
export function gateHandlers<H extends object>(
  definition: Record<string, MethodDefinition>,
  handlers: H,
  gate: CallGate,
  options: GateHandlersOptions = {},
): H {
  const message = options.message ?? "Service is shutting down";
  const refusal = () => new AppError("UNAVAILABLE", message).toServiceError();
  const out: Record<string, unknown> = {};
  for (const [name, handler] of Object.entries(handlers)) {
    const method = definition[name];
    if (method === undefined) throw new TypeError(`Unknown gRPC method: ${name}`);
    if (typeof handler !== "function") {
      out[name] = handler;
      continue;
    }
    const fn = handler as AnyHandler;
    if (!method.responseStream) {
      out[name] = (call: unknown, callback: AnyHandler) => {
        if (!gate.enter()) return callback(refusal());
        let left = false;
        return fn(call, (...args: unknown[]) => {
          if (!left) {
            left = true;
            gate.leave();
          }
          return callback(...args);
        });
      };
    } else {
      out[name] = (call: StreamCall) => {
        if (!gate.enter()) {
          call.emit("error", refusal());
          return;
        }
        let left = false;
        const leave = () => {
          if (left) return;
          left = true;
          gate.leave();
        };
        call.on("finish", leave);
        call.on("error", leave);
        call.on("cancelled", leave);
        call.on("close", leave);
        return fn(call);
      };
    }
  }
  return out as H;
}

/** Options for {@link drainCalls}. */
export interface DrainOptions {
  /** How long to wait for calls in flight, ms. */
  timeoutMs: number;
  /**
   * How long to wait after the last call before resolving, ms: a finished handler has only
   * queued its response, and grpc-js exposes no per-call "flushed" event.
   */
  lingerMs: number;
}

/**
 * The no-GOAWAY drain: close `gate` (new calls get UNAVAILABLE), wait for the calls in flight
 * (up to `timeoutMs`), then linger `lingerMs` so their responses are written. Resolves true
 * when every call finished in time. Afterwards exit the process, or `server.forceShutdown()`
 * to free the sockets in this process — never `tryShutdown()` (it sends GOAWAY).
 * @example
 * ```ts
 * await listener.close(); // from listenGuarded: stop accepting
 * if (!await drainCalls(gate, { timeoutMs: 10_000, lingerMs: 100 })) log.warn("Calls cut off");
 * ```
 */
export async function drainCalls(gate: CallGate, options: DrainOptions): Promise<boolean> {
  gate.close();
  const drained = await gate.whenIdle(options.timeoutMs);
  if (options.lingerMs > 0) {
    await new Promise((resolve) => setTimeout(resolve, options.lingerMs));
  }
  return drained;
}
