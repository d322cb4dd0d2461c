/**
 * A loopback TCP relay in front of a gRPC server that drops HTTP/2 GOAWAY frames on their
 * way to the client. Deno 2.9's node:http2 client aborts the whole process inside nghttp2
 * when a GOAWAY arrives while recently closed streams are still tracked
 * (`find_stream_on_goaway_func: Assertion 'stream->closed_next == NULL' failed`,
 * denoland/deno#36788) — which every graceful restart of a backend triggers. Without the
 * GOAWAY the client simply sees the connection close, fails in-flight calls with
 * UNAVAILABLE and reconnects. Everything else is forwarded byte for byte.
 * @module
 */

/** A running relay. */
export interface GoawayFilter {
  /** `127.0.0.1:port` for the gRPC client. */
  readonly address: string;
  /** GOAWAY frames dropped so far. */
  readonly dropped: number;
  close(): Promise<void>;
}

const FRAME_HEADER = 9;
const GOAWAY = 0x7;

/**
 * Start a relay to `target`.
 * @example
 * ```ts
 * const filter = await startGoawayFilter({ hostname: "127.0.0.1", port: 50052 });
 * const client = new StateSyncServiceClient(filter.address, credentials.createInsecure());
 * ```
 */
export function startGoawayFilter(
  target: { hostname: string; port: number },
): Promise<GoawayFilter> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  let dropped = 0;
  let closed = false;

  async function relay(client: Deno.TcpConn): Promise<void> {
    let upstream: Deno.TcpConn;
    try {
      upstream = await Deno.connect({ ...target, transport: "tcp" });
    } catch {
      client.close(); // backend down: the client sees a closed connection (UNAVAILABLE)
      return;
    }
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    conns.add(client);
    conns.add(upstream);
    const closeBoth = () => {
      for (const c of [client, upstream]) {
        if (conns.delete(c)) {
          try {
            c.close();
          } catch { /* already closed */ }
        }
      }
    };
    const up = (async () => {
      const buffer = new Uint8Array(64 * 1024);
      while (true) {
        const n = await client.read(buffer);
        if (n === null) break;
        await writeAll(upstream, buffer.subarray(0, n));
      }
    })().catch(() => {}).finally(closeBoth);
    const down = (async () => {
      const buffer = new Uint8Array(64 * 1024);
      let pending: Uint8Array = new Uint8Array(0);
      while (true) {
        const n = await upstream.read(buffer);
        if (n === null) break;
        pending = concat(pending, buffer.subarray(0, n));
        let offset = 0;
        const out: Uint8Array[] = [];
        while (pending.length - offset >= FRAME_HEADER) {
          const length = (pending[offset]! << 16) | (pending[offset + 1]! << 8) |
            pending[offset + 2]!;
          const end = offset + FRAME_HEADER + length;
          if (end > pending.length) break;
          if (pending[offset + 3] === GOAWAY) dropped++;
          else out.push(pending.subarray(offset, end));
          offset = end;
        }
        for (const frame of out) await writeAll(client, frame);
        pending = pending.slice(offset);
      }
    })().catch(() => {}).finally(closeBoth);
    await Promise.all([up, down]);
  }

  const accepting = (async () => {
    for await (const conn of listener) {
      if (closed) {
        conn.close();
        continue;
      }
      const task = relay(conn as Deno.TcpConn);
      tasks.add(task);
      task.finally(() => tasks.delete(task));
    }
  })().catch(() => {});

  const { port } = listener.addr as Deno.NetAddr;
  return Promise.resolve({
    address: `127.0.0.1:${port}`,
    get dropped() {
      return dropped;
    },
    async close() {
      if (closed) return;
      closed = true;
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      conns.clear();
      await accepting;
      await Promise.all([...tasks]);
    },
  });
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b.slice();
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
