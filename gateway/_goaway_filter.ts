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
      const parser = new GoawayStripper(() => dropped++);
      while (true) {
        const n = await upstream.read(buffer);
        if (n === null) break;
        const out = parser.push(buffer.subarray(0, n));
        if (out.length > 0) await writeAll(client, out);
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

/**
 * Streaming HTTP/2 frame filter (server → client direction: frames only, no preface).
 * Passes bytes through untouched except whole GOAWAY frames; in the common case a chunk
 * comes back as-is (no copy).
 */
export class GoawayStripper {
  #header = new Uint8Array(FRAME_HEADER);
  #headerFill = 0;
  /** Payload bytes left of the current frame. */
  #left = 0;
  /** The current frame is a GOAWAY being dropped. */
  #dropping = false;
  #onDrop: () => void;

  constructor(onDrop: () => void = () => {}) {
    this.#onDrop = onDrop;
  }

  /** Feed received bytes; returns the bytes to forward. */
  push(chunk: Uint8Array): Uint8Array {
    const keep: Array<[number, number]> = []; // [start, end) ranges of `chunk` to forward
    const parts: Uint8Array[] = []; // completed headers held back from earlier chunks
    let i = 0;
    const forward = (from: number, to: number) => {
      const last = keep.at(-1);
      if (last && last[1] === from) last[1] = to;
      else keep.push([from, to]);
    };
    while (i < chunk.length) {
      if (this.#left > 0) {
        const take = Math.min(this.#left, chunk.length - i);
        if (!this.#dropping) forward(i, i + take);
        this.#left -= take;
        i += take;
        continue;
      }
      // Collect a 9-byte frame header (it may span chunks).
      const take = Math.min(FRAME_HEADER - this.#headerFill, chunk.length - i);
      const headerStart = i;
      this.#header.set(chunk.subarray(i, i + take), this.#headerFill);
      this.#headerFill += take;
      i += take;
      if (this.#headerFill < FRAME_HEADER) break; // rest of the header comes later
      this.#headerFill = 0;
      const h = this.#header;
      this.#left = (h[0]! << 16) | (h[1]! << 8) | h[2]!;
      this.#dropping = h[3] === GOAWAY;
      if (this.#dropping) {
        this.#onDrop();
      } else if (i - headerStart === FRAME_HEADER) {
        forward(headerStart, i); // header wholly inside this chunk
      } else {
        // Header started in an earlier chunk: emit it whole from the copy.
        if (keep.length > 0) {
          for (const [a, b] of keep) parts.push(chunk.slice(a, b));
          keep.length = 0;
        }
        parts.push(h.slice());
      }
    }
    if (
      parts.length === 0 && keep.length === 1 && keep[0]![0] === 0 &&
      keep[0]![1] === chunk.length
    ) {
      return chunk;
    }
    for (const [a, b] of keep) parts.push(chunk.subarray(a, b));
    const total = parts.reduce((n, p) => n + p.length, 0);
    const out = new Uint8Array(total);
    let offset = 0;
    for (const p of parts) {
      out.set(p, offset);
      offset += p.length;
    }
    return out;
  }
}
