/**
 * Serve a grpc-js server on a Deno TCP listener with incoming HTTP/2 GOAWAY frames removed.
 *
 * Deno 2.9's node:http2 aborts the whole process inside nghttp2 when a GOAWAY arrives on a
 * session that has carried more than ~128 streams (`find_stream_on_goaway_func: Assertion
 * 'stream->closed_next == NULL' failed`, denoland/deno#36788). Every graceful client close
 * sends one — a gateway restart, or grpc-js closing an idle channel — so without this guard
 * one polite client can take the StateSync server down. Without the GOAWAY the server just
 * sees the connection end, which it handles like any disconnect. Everything else passes
 * through unchanged (client → server only; what the server sends is untouched).
 *
 * Connections reach grpc-js through its connection injector: no extra TCP hop.
 * @module
 */
import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import { type Server, ServerCredentials } from "@grpc/grpc-js";

const PREFACE_LENGTH = 24; // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
const FRAME_HEADER = 9;
const GOAWAY = 0x7;

/**
 * Streaming filter for the client → server bytes of an HTTP/2 connection: forwards the
 * connection preface and every frame except GOAWAY frames, which are dropped whole. A chunk
 * without a GOAWAY or a split frame header comes back as the same bytes (no copy).
 */
export class IncomingGoawayStripper {
  #prefaceLeft = PREFACE_LENGTH;
  #header = new Uint8Array(FRAME_HEADER);
  #headerFill = 0;
  /** Payload bytes left of the current frame. */
  #left = 0;
  #dropping = false;
  /** GOAWAY frames dropped so far. */
  dropped = 0;

  /** Feed received bytes; returns the bytes to forward. */
  push(chunk: Uint8Array): Uint8Array {
    const parts: Uint8Array[] = [];
    let runStart = 0; // start of the pending pass-through run in `chunk`
    let i = 0;
    while (i < chunk.length) {
      const rest = chunk.length - i;
      if (this.#prefaceLeft > 0) {
        const n = Math.min(this.#prefaceLeft, rest);
        this.#prefaceLeft -= n;
        i += n;
        continue;
      }
      if (this.#left > 0) {
        const n = Math.min(this.#left, rest);
        this.#left -= n;
        i += n;
        if (this.#dropping) runStart = i;
        continue;
      }
      const headerBegin = i;
      const continued = this.#headerFill > 0; // its first bytes came in an earlier chunk
      const n = Math.min(FRAME_HEADER - this.#headerFill, rest);
      this.#header.set(chunk.subarray(i, i + n), this.#headerFill);
      this.#headerFill += n;
      i += n;
      if (this.#headerFill < FRAME_HEADER) {
        // Hold back a partial header until we know the frame's type.
        if (headerBegin > runStart) parts.push(chunk.subarray(runStart, headerBegin));
        runStart = chunk.length;
        break;
      }
      this.#headerFill = 0;
      const h = this.#header;
      this.#left = (h[0]! << 16) | (h[1]! << 8) | h[2]!;
      this.#dropping = h[3] === GOAWAY;
      if (this.#dropping) {
        this.dropped++;
        if (headerBegin > runStart) parts.push(chunk.subarray(runStart, headerBegin));
        runStart = i;
      } else if (continued) {
        if (headerBegin > runStart) parts.push(chunk.subarray(runStart, headerBegin));
        parts.push(h.slice());
        runStart = i;
      }
    }
    if (parts.length === 0 && runStart === 0) return chunk;
    if (runStart < chunk.length) parts.push(chunk.subarray(runStart));
    if (parts.length === 1) return parts[0]!;
    return concat(parts);
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A Deno TCP connection as the node-style socket grpc-js's injector expects, GOAWAY-filtered. */
class GuardedSocket extends Duplex {
  readonly remoteAddress: string;
  readonly remotePort: number;
  #conn: Deno.TcpConn;
  #stripper = new IncomingGoawayStripper();
  #reading = false;

  constructor(conn: Deno.TcpConn) {
    super();
    this.#conn = conn;
    const remote = conn.remoteAddr as Deno.NetAddr;
    this.remoteAddress = remote.hostname;
    this.remotePort = remote.port;
    conn.setNoDelay(true);
  }

  override _read(): void {
    if (this.#reading) return;
    this.#reading = true;
    this.#pump().catch((error) => this.destroy(error));
  }

  #buffer = new Uint8Array(64 * 1024);

  async #pump(): Promise<void> {
    for (;;) {
      const n = await this.#conn.read(this.#buffer).catch(() => null);
      if (n === null) {
        this.push(null);
        return;
      }
      const out = this.#stripper.push(this.#buffer.subarray(0, n));
      if (out.length === 0) continue;
      if (!this.push(Buffer.from(out))) { // a copy: the read buffer is reused
        this.#reading = false;
        return;
      }
    }
  }

  override _write(
    chunk: Uint8Array,
    _encoding: string,
    callback: (error?: Error | null) => void,
  ): void {
    writeAll(this.#conn, chunk).then(() => callback(), (error) => callback(error));
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#conn.closeWrite().then(() => callback(), () => callback());
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    try {
      this.#conn.close();
    } catch {
      // already closed by the peer
    }
    callback(error);
  }

  // The socket methods node:http2 calls on its transport.
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  setTimeout(): this {
    return this;
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}

/** A TCP listener feeding a grpc-js server through the GOAWAY guard. */
export interface GuardedListener {
  readonly port: number;
  /** Stop accepting; open connections stay until the server closes them. */
  close(): void;
}

/**
 * Accept TCP connections on `hostname:port` and hand them to `server`, GOAWAY-filtered.
 * @throws {Deno.errors.AddrInUse} and other listen errors
 */
export function serveGuarded(
  server: Server,
  options: { hostname: string; port: number },
): GuardedListener {
  const listener = Deno.listen({ hostname: options.hostname, port: options.port });
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  let closed = false;
  (async () => {
    for await (const conn of listener) {
      injector.injectConnection(new GuardedSocket(conn as Deno.TcpConn));
    }
  })().catch(() => {
    // The listener was closed.
  });
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close() {
      if (closed) return;
      closed = true;
      listener.close();
    },
  };
}
