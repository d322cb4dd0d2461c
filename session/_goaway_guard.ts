/**
 * A TCP listener for a grpc-js server that keeps HTTP/2 GOAWAY frames sent by *clients* away
 * from the server's nghttp2. Deno 2.9.6 aborts the whole process when a GOAWAY arrives on a
 * connection that has carried a few hundred streams (`find_stream_on_goaway_func: Assertion
 * 'stream->closed_next == NULL' failed`, denoland/deno#36788), and every grpc-js client sends
 * one when it closes its channel — so a gateway shutting down cleanly would kill this service.
 * With the GOAWAY dropped the server simply sees the connection end. Everything else is
 * forwarded unchanged; accepted sockets are injected with `server.createConnectionInjector`.
 *
 * It also lets shutdown stop accepting connections without grpc-js `unbind()` (whose http2
 * `server.close()` sends GOAWAY to every client, crashing them the same way).
 * @module
 */
import { type Server, ServerCredentials } from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { createServer, type Server as NetServer } from "node:net";
import { Duplex } from "node:stream";

const PREFACE_LENGTH = 24; // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
const FRAME_HEADER = 9;
const GOAWAY = 0x7;

/**
 * Streaming filter for the client → server byte stream: passes the connection preface and
 * every frame except GOAWAY frames, which are dropped whole.
 */
export class ClientGoawayStripper {
  #prefaceLeft = PREFACE_LENGTH;
  #header = new Uint8Array(FRAME_HEADER);
  #headerFill = 0;
  #left = 0;
  #dropping = false;
  /** GOAWAY frames dropped so far. */
  dropped = 0;

  /** Feed received bytes; returns the bytes to forward (the input itself when unchanged). */
  push(chunk: Uint8Array): Uint8Array {
    const out: Uint8Array[] = [];
    let i = 0;
    let runStart = 0; // start of the current run of forwarded bytes in `chunk`
    const flush = (end: number) => {
      if (end > runStart) out.push(chunk.subarray(runStart, end));
    };
    if (this.#prefaceLeft > 0) {
      const take = Math.min(this.#prefaceLeft, chunk.length);
      this.#prefaceLeft -= take;
      i = take;
    }
    while (i < chunk.length) {
      if (this.#left > 0) {
        const take = Math.min(this.#left, chunk.length - i);
        if (this.#dropping) {
          flush(i);
          runStart = i + take;
        }
        this.#left -= take;
        i += take;
        continue;
      }
      const headerStart = i;
      const take = Math.min(FRAME_HEADER - this.#headerFill, chunk.length - i);
      const partialBefore = this.#headerFill > 0;
      this.#header.set(chunk.subarray(i, i + take), this.#headerFill);
      this.#headerFill += take;
      i += take;
      if (this.#headerFill < FRAME_HEADER) {
        // The header continues in the next chunk: hold these bytes back.
        flush(headerStart);
        runStart = i;
        break;
      }
      this.#headerFill = 0;
      const h = this.#header;
      this.#left = (h[0]! << 16) | (h[1]! << 8) | h[2]!;
      this.#dropping = h[3] === GOAWAY;
      if (this.#dropping) {
        this.dropped++;
        flush(headerStart);
        runStart = i;
      } else if (partialBefore) {
        // Emit the whole header from the copy, then continue forwarding from here.
        flush(headerStart);
        out.push(h.slice());
        runStart = i;
      }
    }
    if (out.length === 0 && runStart === 0) return chunk;
    flush(i);
    if (out.length === 1) return out[0]!;
    const total = out.reduce((n, part) => n + part.length, 0);
    const joined = new Uint8Array(total);
    let offset = 0;
    for (const part of out) {
      joined.set(part, offset);
      offset += part.length;
    }
    return joined;
  }
}

/** The socket methods grpc-js calls on a transport (optional on the wrapped stream). */
interface SocketLike {
  remoteAddress?: string;
  remotePort?: number;
  localAddress?: string;
  localPort?: number;
  setNoDelay?(noDelay?: boolean): unknown;
  setKeepAlive?(enable?: boolean, delay?: number): unknown;
  setTimeout?(ms: number, callback?: () => void): unknown;
  ref?(): unknown;
  unref?(): unknown;
}

/** A duplex whose incoming bytes pass through a {@link ClientGoawayStripper}. */
class GuardedStream extends Duplex {
  #inner: Duplex & SocketLike;
  #stripper = new ClientGoawayStripper();

  constructor(inner: Duplex & SocketLike) {
    super();
    this.#inner = inner;
    inner.on("data", (chunk: Uint8Array) => {
      const out = this.#stripper.push(chunk);
      if (out.length > 0 && !this.push(Buffer.from(out.buffer, out.byteOffset, out.length))) {
        inner.pause();
      }
    });
    inner.on("end", () => this.push(null));
    inner.on("error", (error) => this.destroy(error));
    inner.on("close", () => this.destroy());
  }

  get remoteAddress(): string | undefined {
    return this.#inner.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.#inner.remotePort;
  }

  get localAddress(): string | undefined {
    return this.#inner.localAddress;
  }

  get localPort(): number | undefined {
    return this.#inner.localPort;
  }

  override _read(): void {
    this.#inner.resume();
  }

  override _write(
    chunk: Buffer,
    encoding: BufferEncoding,
    callback: (e?: Error | null) => void,
  ): void {
    this.#inner.write(chunk, encoding, callback);
  }

  override _final(callback: (e?: Error | null) => void): void {
    this.#inner.end(callback);
  }

  override _destroy(error: Error | null, callback: (e: Error | null) => void): void {
    this.#inner.destroy(error ?? undefined);
    callback(error);
  }

  setNoDelay(noDelay?: boolean): this {
    this.#inner.setNoDelay?.(noDelay);
    return this;
  }

  setKeepAlive(enable?: boolean, delay?: number): this {
    this.#inner.setKeepAlive?.(enable, delay);
    return this;
  }

  setTimeout(ms: number, callback?: () => void): this {
    this.#inner.setTimeout?.(ms, callback);
    return this;
  }

  ref(): this {
    this.#inner.ref?.();
    return this;
  }

  unref(): this {
    this.#inner.unref?.();
    return this;
  }
}

/**
 * Wrap a transport stream (a TCP socket, a Quantum connection's duplex) before injecting it
 * into a grpc-js server, so GOAWAY frames from the client never reach nghttp2.
 */
export function guardIncomingGoaway(stream: Duplex): Duplex {
  return new GuardedStream(stream);
}

/** A guarded listener. */
export interface GuardedListener {
  /** The bound port. */
  readonly port: number;
  /** Stop accepting connections (open ones stay with the gRPC server); resolves at once. */
  close(): Promise<void>;
}

/**
 * Accept TCP connections on `hostname:port` and inject them, GOAWAY-guarded, into `server`.
 * @throws {Error} when the address cannot be bound
 */
export function listenGuarded(
  server: Server,
  options: { hostname: string; port: number },
): Promise<GuardedListener> {
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  const listener: NetServer = createServer((socket) => {
    socket.setNoDelay(true);
    injector.injectConnection(guardIncomingGoaway(socket));
  });
  return new Promise((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(options.port, options.hostname, () => {
      listener.off("error", reject);
      const address = listener.address();
      const port = typeof address === "object" && address !== null ? address.port : options.port;
      resolve({
        port,
        // net.Server.close() calls back only once every connection ended; the injected ones
        // belong to the gRPC server now, so resolve as soon as accepting has stopped.
        close: () => {
          listener.close();
          return Promise.resolve();
        },
      });
    });
  });
}
