/**
 * Raise a UDP socket's kernel receive buffer (`SO_RCVBUF`) through `setsockopt(2)` via
 * `Deno.dlopen` (needs `--allow-ffi`; Linux only). Deno does not expose socket fds, so the fd
 * is found through the socket's inode: `/proc/net/udp{,6}` maps the local port to the inode,
 * `/proc/self/fd` maps the inode to the fd. The kernel caps the value at
 * `net.core.rmem_max` (and doubles it for bookkeeping).
 * @module
 */

const SOL_SOCKET = 1;
const SO_RCVBUF = 8;

/** The fd of this process's UDP socket bound to `port`, or undefined. */
function udpSocketFd(port: number): number | undefined {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  const inodes = new Set<string>();
  for (const file of ["/proc/net/udp", "/proc/net/udp6"]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length > 9 && cols[1]!.endsWith(`:${hexPort}`)) inodes.add(cols[9]!);
    }
  }
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(Deno.readLinkSync(`/proc/self/fd/${entry.name}`));
      if (m && inodes.has(m[1]!)) return Number(entry.name);
    } catch {
      // fd closed meanwhile
    }
  }
  return undefined;
}

/**
 * Sets `SO_RCVBUF` on this process's UDP socket bound to `port`.
 *
 * @returns the buffer size the kernel reports afterwards
 * @throws {Deno.errors.NotFound} when no such socket is found; FFI permission errors pass through
 */
export function setReceiveBuffer(port: number, bytes: number): number {
  if (!Number.isInteger(bytes) || bytes < 1024) {
    throw new RangeError("Invalid receiveBufferBytes: expected an integer >= 1024");
  }
  const fd = udpSocketFd(port);
  if (fd === undefined) throw new Deno.errors.NotFound(`No UDP socket on port ${port}`);
  const lib = Deno.dlopen("libc.so.6", {
    setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
    getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  });
  try {
    const value = new Int32Array([bytes]);
    if (lib.symbols.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, value, 4) !== 0) {
      throw new Error("setsockopt(SO_RCVBUF) failed");
    }
    const out = new Int32Array(1);
    const len = new Uint32Array([4]);
    lib.symbols.getsockopt(fd, SOL_SOCKET, SO_RCVBUF, out, len);
    return out[0]!;
  } finally {
    lib.close();
  }
}
