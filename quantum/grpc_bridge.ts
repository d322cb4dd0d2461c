/**
 * gRPC over Quantum with `@grpc/grpc-js`.
 *
 * Server side: grpc-js accepts any duplex stream through a connection injector, so every
 * Quantum connection becomes one HTTP/2 connection ({@linkcode serveGrpcOverQuantum}).
 * Client side: {@linkcode connectGrpcOverQuantum} gives a grpc-js client an address and
 * credentials under which every connection is its own Quantum connection (bytes go straight
 * from grpc-js to Quantum). {@linkcode startQuantumTunnel} is the generic alternative: a
 * loopback TCP listener that pipes each accepted socket (with `setNoDelay(true)`) through its
 * own new Quantum connection, for any client that can only be given an address.
 *
 * @example
 * ```ts
 * // server process
 * const server = new grpc.Server();
 * server.addService(MyService, impl);
 * const bridge = serveGrpcOverQuantum(server, listen({ port: 7000 }));
 *
 * // client process
 * const channel = await connectGrpcOverQuantum({ hostname: "10.0.0.5", port: 7000 });
 * const client = new MyClient(channel.address, channel.credentials);
 * ```
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import type { QuantumConnection } from "./connection.ts";
import { type DialedChannel, GoawayStripper, startDialedChannel } from "../kernel/grpc_guard.ts";
import { dial, type DialOptions, type QuantumListener } from "./endpoint.ts";

/**
 * A `node:stream` Duplex over a Quantum connection, with the no-op socket methods
 * (`ref`, `unref`, `setNoDelay`, `setKeepAlive`, `setTimeout`) grpc-js calls on a transport.
 * Ending the duplex sends FIN; destroying it with an error aborts the connection (RST).
 */
export function connectionToDuplex(conn: QuantumConnection): Duplex {
  const reader = conn.readable.getReader();
  const writer = conn.writable.getWriter();
  let pumping = false;
  let finished = false;

  const duplex = new Duplex({
    read() {
      if (pumping || finished) return;
      pumping = true;
      void pump();
    },
    write(chunk: Uint8Array, _encoding, callback) {
      writer.write(chunk).then(() => callback(), (error) => callback(error));
    },
    // Frames written while one write is pending arrive here together: one connection write
    // lets them share packets instead of sending one small packet per HTTP/2 frame.
    writev(chunks: Array<{ chunk: Uint8Array }>, callback) {
      let size = 0;
      for (const { chunk } of chunks) size += chunk.length;
      const joined = new Uint8Array(size);
      let offset = 0;
      for (const { chunk } of chunks) {
        joined.set(chunk, offset);
        offset += chunk.length;
      }
      writer.write(joined).then(() => callback(), (error) => callback(error));
    },
    final(callback) {
      writer.close().then(() => callback(), (error) => callback(error));
    },
    destroy(error, callback) {
      finished = true;
      if (error) conn.abort(error.message);
      else void conn.close();
      reader.releaseLock();
      writer.releaseLock();
      callback(error);
    },
  });

  async function pump(): Promise<void> {
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (finished) return;
        if (done) {
          finished = true;
          duplex.push(null);
          return;
        }
        if (!duplex.push(value)) break;
      }
    } catch (error) {
      if (!finished) duplex.destroy(error as Error);
      return;
    } finally {
      pumping = false;
    }
  }

  const socketLike = duplex as Duplex & Record<string, unknown>;
  for (const method of ["ref", "unref", "setNoDelay", "setKeepAlive", "setTimeout"]) {
    socketLike[method] = () => duplex;
  }
  Object.defineProperties(socketLike, {
    remoteAddress: { get: () => conn.remoteAddr.hostname },
    remotePort: { get: () => conn.remoteAddr.port },
  });
  return duplex;
}

/**
 * Serve a grpc-js server on a Quantum listener: every accepted connection is injected as one
 * HTTP/2 transport. `close()` stops accepting, closes the listener and the injected sessions.
 */
export function serveGrpcOverQuantum(
  server: grpc.Server,
  listener: QuantumListener,
): { close(): Promise<void> } {
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const accepting = (async () => {
    for await (const conn of listener) {
      injector.injectConnection(connectionToDuplex(conn));
    }
  })();
  let closed = false;
  return {
    async close() {
      if (closed) return;
      closed = true;
      injector.destroy();
      await listener.close();
      await accepting;
    },
  };
}

/**
 * A grpc-js channel to the Quantum listener at `hostname:port`: give `address` and
 * `credentials` to the client. Each HTTP/2 connection is its own Quantum connection, written
 * and read by grpc-js directly (no loopback TCP hop), and the server's GOAWAY frames are
 * dropped (see kernel/grpc_guard.ts).
 */
export function connectGrpcOverQuantum(options: DialOptions): Promise<DialedChannel> {
  return startDialedChannel(async () => connectionToDuplex(await dial(options)));
}

/** Options for {@linkcode startQuantumTunnel}: where the Quantum listener is, and dial options. */
export type QuantumTunnelOptions = DialOptions & {
  /** Loopback port for the TCP side (default 0: any free port). */
  localPort?: number;
  /**
   * Drop HTTP/2 GOAWAY frames on their way to the gRPC client (default true): Deno 2.9's
   * node:http2 can abort the client process on a received GOAWAY (see kernel/grpc_guard.ts),
   * and doing it here spares the caller a second loopback relay.
   */
  dropGoaway?: boolean;
};

/** A running loopback TCP ⇄ Quantum tunnel. */
export interface QuantumTunnel {
  /** `"127.0.0.1:NNNN"`, ready for a grpc-js client. */
  readonly address: string;
  /** Stop accepting and close every tunnelled connection (TCP and Quantum). */
  close(): Promise<void>;
}

/**
 * A loopback TCP listener whose every accepted socket is piped through its own new Quantum
 * connection to `hostname:port` (kcptun style): grpc-js clients reach a Quantum server by
 * dialing `tunnel.address`.
 */
export function startQuantumTunnel(options: QuantumTunnelOptions): Promise<QuantumTunnel> {
  try {
    return Promise.resolve(openTunnel(options));
  } catch (error) {
    return Promise.reject(error);
  }
}

/** Most bytes gathered into one write while the previous write is still in progress. */
const MAX_COALESCED_BYTES = 256 * 1024;

/**
 * Copy `read` chunks to `write`, gathering the chunks that arrive while a write is pending
 * into the next single write (one syscall / Quantum write for a burst of HTTP/2 frames).
 * Reading pauses once `MAX_COALESCED_BYTES` are waiting. Resolves at end of input after
 * everything is written; rejects on the first read or write error, after calling `onError`
 * (which must unblock a pending `read`, e.g. by closing the source). Exported for tests.
 */
export async function pumpCoalesced(pipe: {
  read: () => Promise<Uint8Array | null>;
  write: (bytes: Uint8Array) => Promise<void>;
  filter?: (chunk: Uint8Array) => Uint8Array;
  onError: () => void;
}): Promise<void> {
  let waiting: Uint8Array[] = [];
  let waitingBytes = 0;
  // `draining` changes in the same turn as the drain loop's last check, so a chunk queued
  // after that check always starts a new drain (never stranded behind a finished one).
  let draining = false;
  let drained: Promise<void> = Promise.resolve();
  let failure: { error: unknown } | null = null;
  const drain = async () => {
    try {
      while (waiting.length > 0 && failure === null) {
        const bytes = waiting.length === 1 ? waiting[0]! : Buffer.concat(waiting, waitingBytes);
        waiting = [];
        waitingBytes = 0;
        await pipe.write(bytes);
      }
    } catch (error) {
      failure ??= { error };
      pipe.onError();
    } finally {
      draining = false;
    }
  };
  const flush = () => {
    if (!draining) {
      draining = true;
      drained = drain();
    }
    return drained;
  };
  try {
    while (failure === null) {
      const chunk = await pipe.read();
      if (chunk === null) break;
      const out = pipe.filter ? pipe.filter(chunk) : chunk;
      if (out.length === 0) continue;
      waiting.push(out);
      waitingBytes += out.length;
      const pending = flush();
      if (waitingBytes >= MAX_COALESCED_BYTES) await pending;
    }
    while (draining) await drained;
  } catch (error) {
    failure ??= { error };
    pipe.onError();
  }
  if (failure !== null) throw failure.error;
}

function openTunnel(options: QuantumTunnelOptions): QuantumTunnel {
  const { localPort, dropGoaway = true, ...dialOptions } = options;
  const tcp = Deno.listen({ hostname: "127.0.0.1", port: localPort ?? 0 });
  const active = new Set<{ socket: Deno.TcpConn; conn: QuantumConnection | null }>();
  const pipes = new Set<Promise<void>>();

  async function tunnel(socket: Deno.TcpConn): Promise<void> {
    socket.setNoDelay(true);
    const entry: { socket: Deno.TcpConn; conn: QuantumConnection | null } = { socket, conn: null };
    active.add(entry);
    try {
      const conn = await dial(dialOptions);
      entry.conn = conn;
      // A failure either way ends both: closing both ends unblocks the other direction.
      const onError = () => {
        conn.abort("tunnel pipe failed");
        try {
          socket.close();
        } catch { /* already closed */ }
      };
      // TCP → Quantum: each read takes whatever the kernel has (up to 64 KiB).
      const buffer = new Uint8Array(64 * 1024);
      const writer = conn.writable.getWriter();
      const up = pumpCoalesced({
        read: async () => {
          const n = await socket.read(buffer);
          return n === null ? null : buffer.slice(0, n);
        },
        write: (bytes) => writer.write(bytes),
        onError,
      }).then(() => writer.close());
      // Quantum → TCP, without the server's GOAWAY frames when asked.
      const reader = conn.readable.getReader();
      const stripper = dropGoaway ? new GoawayStripper() : undefined;
      const down = pumpCoalesced({
        read: async () => {
          const { value, done } = await reader.read();
          return done ? null : value;
        },
        write: (bytes) => writeAll(socket, bytes),
        ...(stripper ? { filter: (chunk: Uint8Array) => stripper.push(chunk) } : {}),
        onError,
      }).then(() => socket.closeWrite());
      const [a, b] = await Promise.allSettled([up, down]);
      if (a.status === "rejected" || b.status === "rejected") onError();
      await conn.close();
      socket.close();
    } catch {
      // Dial failure or reset: the TCP side sees its connection closed.
      entry.conn?.abort("tunnel closed");
      try {
        socket.close();
      } catch { /* already closed */ }
    } finally {
      active.delete(entry);
    }
  }

  const accepting = (async () => {
    while (true) {
      let socket: Deno.TcpConn;
      try {
        socket = await tcp.accept();
      } catch {
        return; // listener closed
      }
      const pipe = tunnel(socket);
      pipes.add(pipe);
      void pipe.finally(() => pipes.delete(pipe));
    }
  })();

  const port = (tcp.addr as Deno.NetAddr).port;
  return {
    address: `127.0.0.1:${port}`,
    async close() {
      tcp.close();
      await accepting;
      for (const entry of active) {
        entry.conn?.abort("tunnel closed");
        try {
          entry.socket.close();
        } catch { /* already closed */ }
      }
      await Promise.allSettled([...pipes]);
    },
  };
}

async function writeAll(socket: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await socket.write(bytes.subarray(written));
}
