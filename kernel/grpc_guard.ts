/**
 * Guards against HTTP/2 GOAWAY frames for grpc-js on Deno 2.9.6. Deno's `node:http2` aborts
 * the whole *receiving* process inside nghttp2 when a GOAWAY arrives on a connection that has
 * carried a few hundred streams (`find_stream_on_goaway_func: Assertion
 * 'stream->closed_next == NULL' failed`, denoland/deno#36788). Without the GOAWAY the peer
 * simply sees the connection end, fails calls in flight with UNAVAILABLE and reconnects.
 *
 * - Servers: {@link listenGuarded} accepts TCP connections and injects them into a grpc-js
 *   server through {@link guardIncomingGoaway}, which drops the GOAWAY every grpc-js client
 *   sends when it closes its channel. Closing the listener stops accepting without grpc-js
 *   `unbind()` (whose http2 `server.close()` would send GOAWAY to every client). Shut down
 *   without `tryShutdown()` too: see {@link CallGate}.
 * - Clients: {@link goawayGuardedCredentials} drops the GOAWAY frames a server sends (a
 *   backend's graceful restart) inside the client's own connections, and
 *   {@link startDialedChannel} does the same for connections over another transport.
 *
 * Everything but GOAWAY frames is passed on byte for byte.
 * @module
 */
import { CallCredentials, ChannelCredentials, type Server, ServerCredentials } from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { createServer, type Server as NetServer } from "node:net";
import { Duplex } from "node:stream";

const PREFACE_LENGTH = 24; // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
const FRAME_HEADER = 9;
const GOAWAY = 0x7;

/** Options for {@link GoawayStripper}. */
export interface GoawayStripperOptions {
  /**
   * The stream starts with the 24-byte client connection preface (client → server bytes),
   * passed through unparsed. Default false (server → client bytes: frames only).
   */
  preface?: boolean;
}

/**
 * Streaming filter for one direction of an HTTP/2 connection: forwards every frame except
 * GOAWAY frames, which are dropped whole. A chunk without a GOAWAY or a split frame header
 * comes back as the same bytes (no copy).
 * @example
 * ```ts
 * const stripper = new GoawayStripper({ preface: true });
 * const forward = stripper.push(received);
 * ```
 */
export class GoawayStripper {
  #prefaceLeft: number;
  #header = new Uint8Array(FRAME_HEADER);
  #headerFill = 0;
  /** Payload bytes left of the current frame. */
  #left = 0;
  #dropping = false;
  /** GOAWAY frames dropped so far. */
  dropped = 0;

  constructor(options: GoawayStripperOptions = {}) {
    this.#prefaceLeft = options.preface ? PREFACE_LENGTH : 0;
  }

  /** Feed received bytes; returns the bytes to forward (possibly a view of `chunk`). */
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
    return Buffer.concat(parts);
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

/** A duplex whose incoming bytes pass through a {@link GoawayStripper}. */
class GuardedStream extends Duplex {
  #inner: Duplex & SocketLike;
  #stripper: GoawayStripper;

  /** `incomingPreface`: the incoming bytes are client → server (a server's transport). */
  constructor(inner: Duplex & SocketLike, incomingPreface: boolean) {
    super();
    this.#inner = inner;
    this.#stripper = new GoawayStripper({ preface: incomingPreface });
    inner.on("data", (chunk: Uint8Array) => {
      const out = this.#stripper.push(chunk);
      if (out.length > 0 && !this.push(Buffer.from(out.buffer, out.byteOffset, out.length))) {
        inner.pause();
      }
    });
    inner.on("end", () => this.push(null));
    // A failed transport closes like a dropped socket: grpc-js then fails the calls on it with
    // UNAVAILABLE (retryable), where an error would fail them with INTERNAL.
    inner.on("error", () => this.destroy());
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
    // Like a socket's: a write to a connection that failed is not an error of its own (which
    // HTTP/2 would report as INTERNAL); the failure arrives as the connection's close, and
    // grpc-js fails the calls on it with UNAVAILABLE.
    if (this.#inner.destroyed) callback();
    else this.#inner.write(chunk, encoding, () => callback());
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
 * @example
 * ```ts
 * const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
 * injector.injectConnection(guardIncomingGoaway(socket));
 * ```
 */
export function guardIncomingGoaway(stream: Duplex): Duplex {
  return new GuardedStream(stream, true);
}

/**
 * Insecure channel credentials for a grpc-js client whose connections drop the GOAWAY frames
 * the server sends, in process: no relay between client and server.
 * @example
 * ```ts
 * const client = new StateSyncServiceClient("127.0.0.1:50052", goawayGuardedCredentials());
 * ```
 */
export function goawayGuardedCredentials(): ChannelCredentials {
  return new GuardedCredentials(undefined);
}

/** A grpc-js channel whose connections are streams a dial function opens. */
export interface DialedChannel {
  /** The channel address to give the grpc-js client (a loopback listener; see below). */
  readonly address: string;
  /** The credentials to give the grpc-js client. */
  readonly credentials: ChannelCredentials;
  /** Stop accepting and destroy every connection opened so far. */
  close(): Promise<void>;
}

/**
 * Run grpc-js client connections over streams that `dial` opens (a Quantum connection, say),
 * GOAWAY-guarded like {@link goawayGuardedCredentials}. grpc-js has no hook for a custom
 * transport: it always connects TCP to the channel's address and then hands that socket to
 * its credentials' connector. So `address` is a loopback listener that accepts and holds
 * those sockets unused, and the connector swaps each one for a dialed stream: the bytes skip
 * the loopback hop a tunnel would add.
 * @example
 * ```ts
 * const channel = await startDialedChannel(async () => connectionToDuplex(await dial(target)));
 * const client = new StateSyncServiceClient(channel.address, channel.credentials);
 * ```
 */
export function startDialedChannel(dial: () => Promise<Duplex>): Promise<DialedChannel> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held = new Set<Deno.Conn>();
  const dialed = new Set<Duplex>();
  const accepting = (async () => {
    for await (const conn of listener) {
      held.add(conn);
      // grpc-js closes its side right away; then this read ends (null or an error).
      conn.read(new Uint8Array(1)).catch(() => null).finally(() => {
        held.delete(conn);
        try {
          conn.close();
        } catch { /* already closed */ }
      });
    }
  })().catch(() => {});
  const credentials = new GuardedCredentials(async () => {
    const stream = await dial();
    dialed.add(stream);
    stream.once("close", () => dialed.delete(stream));
    return stream;
  });
  let closed = false;
  const { port } = listener.addr as Deno.NetAddr;
  return Promise.resolve({
    address: `127.0.0.1:${port}`,
    credentials,
    async close() {
      if (closed) return;
      closed = true;
      listener.close();
      await accepting;
      for (const conn of held) conn.close();
      held.clear();
      for (const stream of dialed) stream.destroy();
      dialed.clear();
    },
  });
}

/** Insecure credentials with GOAWAY-guarded connections, optionally over dialed streams. */
class GuardedCredentials extends ChannelCredentials {
  #dial: (() => Promise<Duplex>) | undefined;

  constructor(dial: (() => Promise<Duplex>) | undefined) {
    super();
    this.#dial = dial;
  }

  override compose(): ChannelCredentials {
    throw new Error("Cannot compose insecure credentials");
  }

  _isSecure(): boolean {
    return false;
  }

  _equals(other: ChannelCredentials): boolean {
    return other === this;
  }

  _createSecureConnector(): ReturnType<ChannelCredentials["_createSecureConnector"]> {
    const dial = this.#dial;
    const callCredentials = CallCredentials.createEmpty();
    return {
      async connect(socket) {
        let transport: Duplex & SocketLike = socket;
        if (dial !== undefined) {
          socket.on("error", () => {}); // the held socket is dropped; nothing to report
          socket.destroy();
          transport = await dial();
        }
        // grpc-js only uses the Duplex side and the socket methods GuardedStream provides.
        const guarded = new GuardedStream(transport, false) as unknown as typeof socket;
        return { socket: guarded, secure: false };
      },
      waitForReady: () => Promise.resolve(),
      getCallCredentials: () => callCredentials,
      destroy() {},
    };
  }
}

/** A TCP listener feeding a grpc-js server through the GOAWAY guard. */
export interface GuardedListener {
  /** The bound port. */
  readonly port: number;
  /** Stop accepting connections (open ones stay with the gRPC server); resolves at once. */
  close(): Promise<void>;
}

/**
 * Accept TCP connections on `hostname:port` and inject them, GOAWAY-guarded, into `server`
 * (instead of `server.bindAsync`).
 * @throws {Error} when the address cannot be bound
 * @example
 * ```ts
 * const listener = await listenGuarded(server, { hostname: "127.0.0.1", port: 0 });
 * console.log(listener.port);
 * await listener.close(); // stop accepting; no GOAWAY is sent
 * ```
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
      let closed = false;
      resolve({
        port,
        // net.Server.close() calls back only once every connection ended; the injected ones
        // belong to the gRPC server now, so resolve as soon as accepting has stopped.
        close: () => {
          if (!closed) {
            closed = true;
            listener.close();
          }
          return Promise.resolve();
        },
      });
    });
  });
}
