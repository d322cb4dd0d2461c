/**
 * Batched UDP I/O for {@linkcode UdpPacketConn}: Linux `sendmmsg(2)` / `recvmmsg(2)` on the fd
 * of a Deno UDP socket, called synchronously through `Deno.dlopen` (needs `--allow-ffi` and read
 * access to `/proc/self/fd`). Deno's `DatagramConn` costs one async op and one syscall per
 * datagram; this moves up to {@linkcode BATCH_SLOTS} datagrams per syscall. Runs of datagrams
 * to one address with one size (a bulk transfer's data packets) go as one UDP GSO send
 * (`UDP_SEGMENT`, Linux ≥ 4.18), which the kernel carries through its stack once; where the
 * kernel or device refuses GSO, the socket falls back to one datagram per message.
 *
 * Deno does not expose socket fds: the fd is the only UDP socket in `/proc/self/fd` whose
 * `getsockname` equals the Deno socket's address. All `mmsghdr`/`iovec`/`sockaddr` arrays and
 * the datagram slots live in one preallocated buffer per direction, so sending or receiving
 * allocates nothing per datagram. Every call passes `MSG_DONTWAIT`: the fd stays owned by
 * Deno's event loop (tokio), which still does the waiting.
 *
 * Datagrams larger than {@linkcode SLOT_BYTES} are not batched on send (the caller falls back to
 * Deno's send) and are dropped and counted if one arrives through {@linkcode UdpBatch.next}.
 * @module
 */

/** Datagrams per `sendmmsg` / `recvmmsg` call. */
export const BATCH_SLOTS = 64;
/** Largest datagram a slot holds (Quantum sends at most 1232 bytes). */
export const SLOT_BYTES = 2048;

const AF_INET = 2;
const AF_INET6 = 10;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_TYPE = 3;
const SO_REUSEPORT = 15;
const SOCK_DGRAM = 2;
const SOL_UDP = 17;
const UDP_SEGMENT = 103;
const MSG_DONTWAIT = 0x40;
const MSG_TRUNC = 0x20;
const EINTR = 4;
const EAGAIN = 11;
/** What a kernel or device without UDP GSO answers to a segmented send. */
const GSO_UNSUPPORTED = new Set([
  5, /* EIO */
  22, /* EINVAL */
  90, /* EMSGSIZE */
  92, /* ENOPROTOOPT */
]);
/** At most this many segments (the kernel's UDP_MAX_SEGMENTS) and bytes in one GSO send. */
const GSO_MAX_SEGMENTS = 64;
const GSO_MAX_BYTES = 60_000;

// x86_64 / aarch64 Linux (LP64): struct mmsghdr = msghdr (56 bytes) + msg_len (u32) + padding.
const MMSGHDR_BYTES = 64;
const MSG_NAME = 0;
const MSG_NAMELEN = 8;
const MSG_IOV = 16;
const MSG_IOVLEN = 24;
const MSG_CONTROL = 32;
const MSG_CONTROLLEN = 40;
const MSG_FLAGS = 48;
const MSG_LEN = 56;
const IOVEC_BYTES = 16;
/** Room for a sockaddr_in6 (28 bytes), rounded up. */
const SOCKADDR_BYTES = 32;
const SOCKADDR_IN_BYTES = 16;
const SOCKADDR_IN6_BYTES = 28;
/** CMSG_SPACE(2): a cmsghdr (len u64, level i32, type i32) and the u16 segment size, aligned. */
const CMSG_BYTES = 24;
const CMSG_LEN_UDP_SEGMENT = 18;

const LIBC_SYMBOLS = {
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>;

/**
 * True when batched I/O can work here: Linux on x86_64/aarch64, FFI permitted and
 * `/proc/self/fd` readable. Never prompts.
 */
export function batchedIoSupported(): boolean {
  if (Deno.build.os !== "linux") return false;
  if (Deno.build.arch !== "x86_64" && Deno.build.arch !== "aarch64") return false;
  try {
    return Deno.permissions.querySync({ name: "ffi" }).state === "granted" &&
      Deno.permissions.querySync({ name: "read", path: "/proc/self/fd" }).state === "granted";
  } catch {
    return false;
  }
}

/**
 * libc, opened once and shared by every open batch (binding the symbols costs milliseconds);
 * closed with the last batch so no library outlives the sockets that use it.
 */
let shared: { lib: Libc; users: number } | undefined;

function acquireLibc(): Libc {
  shared ??= { lib: Deno.dlopen("libc.so.6", LIBC_SYMBOLS), users: 0 };
  shared.users++;
  return shared.lib;
}

function releaseLibc(): void {
  if (!shared || --shared.users > 0) return;
  shared.lib.close();
  shared = undefined;
}

/** Sends that `flush` could not complete without blocking, in order. */
export type Unsent = Array<[Uint8Array, Deno.NetAddr]>;

/** One socket's batched send queue and receive ring (see the module doc). */
export class UdpBatch {
  readonly #lib: Libc;
  readonly #fd: number;
  readonly #errno: Deno.UnsafePointerView;
  /** Allocated on first use (~140 KB each way): idle sockets stay small. */
  #send: MessageArray | undefined;
  /** The caller's datagram, or undefined when it was written in place (see `reserve`). */
  readonly #sendData: Array<Uint8Array | undefined> = new Array(BATCH_SLOTS);
  readonly #sendLength: number[] = new Array(BATCH_SLOTS).fill(0);
  readonly #sendAddr: Array<Deno.NetAddr | undefined> = new Array(BATCH_SLOTS);
  readonly #sendNameLength: number[] = new Array(BATCH_SLOTS).fill(0);
  /** First slot of each message laid out by #buildMessages. */
  readonly #messageStart: number[] = new Array(BATCH_SLOTS).fill(0);
  #sendCount = 0;
  /** The slot handed out by `reserve`: its encoded address length and its address. */
  #reservedName = 0;
  #reservedAddr: Deno.NetAddr | undefined;
  /** UDP GSO (`UDP_SEGMENT`) until the kernel refuses it. */
  #gso = true;
  #recv: MessageArray | undefined;
  #recvCount = 0;
  #recvNext = 0;
  #refillAllowed = false;
  readonly #sendNames = new SockaddrEncoder();
  readonly #recvNames = new SockaddrDecoder();
  #closed = false;
  /** Datagrams that arrived larger than a slot (their tail was cut off) and were dropped. */
  receiveTruncated = 0;

  /**
   * Batched I/O for `socket`, or undefined when unsupported or its fd cannot be identified
   * unambiguously. The caller closes the batch before the socket.
   */
  static open(socket: Deno.DatagramConn): UdpBatch | undefined {
    if (!batchedIoSupported()) return undefined;
    let lib: Libc;
    try {
      lib = acquireLibc();
    } catch {
      return undefined;
    }
    try {
      const fd = findUdpFd(lib, socket.addr as Deno.NetAddr);
      const errno = lib.symbols.__errno_location();
      if (fd !== undefined && errno !== null) return new UdpBatch(lib, fd, errno);
    } catch {
      // fall through: no batching
    }
    releaseLibc();
    return undefined;
  }

  private constructor(lib: Libc, fd: number, errno: Deno.PointerObject) {
    this.#lib = lib;
    this.#fd = fd;
    this.#errno = new Deno.UnsafePointerView(errno);
  }

  /** Datagrams queued for the next {@linkcode flush}. */
  get pending(): number {
    return this.#sendCount;
  }

  /**
   * Queue a copy of `data` for `addr`. Returns false (nothing queued) when the batch is full,
   * `data` does not fit a slot or `addr` is not a literal IPv4/IPv6 address.
   */
  add(data: Uint8Array, addr: Deno.NetAddr): boolean {
    const i = this.#sendCount;
    if (i >= BATCH_SLOTS || data.length > SLOT_BYTES || this.#closed) return false;
    const m = this.#send ??= new MessageArray();
    const nameLength = this.#sendNames.encode(addr, m.bytes, m.nameOffset(i));
    if (nameLength === 0) return false;
    m.bytes.set(data, m.slotOffset(i));
    this.#queue(i, data.length, nameLength, addr);
    this.#sendData[i] = data;
    return true;
  }

  /**
   * The next free slot (a {@linkcode SLOT_BYTES} view), for a datagram to `addr` written in
   * place: saves the caller an allocation and a copy per datagram. Queue it with
   * {@linkcode commit}; until then nothing is queued. Null when {@linkcode add} would refuse.
   */
  reserve(addr: Deno.NetAddr): Uint8Array | null {
    const i = this.#sendCount;
    if (i >= BATCH_SLOTS || this.#closed) return null;
    const m = this.#send ??= new MessageArray();
    this.#reservedName = this.#sendNames.encode(addr, m.bytes, m.nameOffset(i));
    if (this.#reservedName === 0) return null;
    this.#reservedAddr = addr;
    return m.slots[i]!;
  }

  /** Queue the datagram of `length` bytes written into the slot the last `reserve` returned. */
  commit(length: number): void {
    const addr = this.#reservedAddr;
    if (!addr || length > SLOT_BYTES) throw new RangeError("Nothing reserved to commit");
    this.#reservedAddr = undefined;
    this.#queue(this.#sendCount, length, this.#reservedName, addr);
  }

  #queue(i: number, length: number, nameLength: number, addr: Deno.NetAddr): void {
    this.#send!.view.setBigUint64(this.#send!.iovecOffset(i) + 8, BigInt(length), true);
    this.#sendLength[i] = length;
    this.#sendNameLength[i] = nameLength;
    this.#sendData[i] = undefined;
    this.#sendAddr[i] = addr;
    this.#sendCount = i + 1;
  }

  /**
   * Send everything queued with `sendmmsg`. Datagrams the kernel refuses individually (e.g.
   * unreachable address) count as errors and are skipped, like a failed `send`; when the
   * socket buffer is full the rest comes back as `unsent`, in order.
   */
  flush(): { errors: number; unsent: Unsent } {
    const count = this.#sendCount;
    let errors = 0;
    let unsent: Unsent = NONE;
    let i = 0;
    while (i < count) {
      const messages = this.#buildMessages(i, count);
      const sent = this.#lib.symbols.sendmmsg(this.#fd, this.#send!.bytes, messages, MSG_DONTWAIT);
      if (sent > 0) {
        i = sent < messages ? this.#messageStart[sent]! : count;
        continue;
      }
      const errno = sent === 0 ? EAGAIN : this.#errno.getInt32(); // 0: never, but never spin
      if (errno === EINTR) continue;
      if (errno === EAGAIN) {
        unsent = [];
        for (; i < count; i++) unsent.push([this.#sendDatagram(i), this.#sendAddr[i]!]);
        break;
      }
      const end = messages > 1 ? this.#messageStart[1]! : count;
      if (this.#gso && end - i > 1 && GSO_UNSUPPORTED.has(errno)) {
        this.#gso = false; // this path cannot segment: one datagram per message from now on
        continue;
      }
      errors += end - i; // the error belongs to the first message's datagrams
      i = end;
    }
    this.#sendData.fill(undefined, 0, count);
    this.#sendAddr.fill(undefined, 0, count);
    this.#sendCount = 0;
    return { errors, unsent };
  }

  /** Slot `i`'s datagram as the caller's own bytes (a copy when it was written in place). */
  #sendDatagram(i: number): Uint8Array {
    const data = this.#sendData[i];
    if (data) return data;
    const start = this.#send!.slotOffset(i);
    return this.#send!.bytes.slice(start, start + this.#sendLength[i]!);
  }

  /**
   * Lay out slots `from .. count - 1` as send messages; returns how many. With GSO, a run of
   * datagrams to the same address and of the same size (the last may be shorter) is one
   * message: the kernel moves it through the stack once and cuts it into datagrams at the end.
   */
  #buildMessages(from: number, count: number): number {
    const m = this.#send!;
    let k = 0;
    let i = from;
    while (i < count) {
      const size = this.#sendLength[i]!;
      const addr = this.#sendAddr[i]!;
      let end = i + 1;
      if (this.#gso) {
        let bytes = size;
        while (end < count && end - i < GSO_MAX_SEGMENTS) {
          const next = this.#sendLength[end]!;
          const to = this.#sendAddr[end]!;
          if (next > size || bytes + next > GSO_MAX_BYTES) break;
          if (to !== addr && (to.port !== addr.port || to.hostname !== addr.hostname)) break;
          bytes += next;
          end++;
          if (next < size) break; // only the last segment may be shorter
        }
      }
      this.#messageStart[k] = i;
      m.setMessage(k, i, end - i, this.#sendNameLength[i]!, end - i > 1 ? size : 0);
      k++;
      i = end;
    }
    return k;
  }

  /** Let the next {@linkcode next} on an empty ring call `recvmmsg` once more. */
  allowRefill(): void {
    this.#refillAllowed = true;
  }

  /**
   * The next datagram already waiting in the kernel, without blocking: from the ring, which is
   * refilled with one `recvmmsg` when empty, once per {@linkcode allowRefill} (so a reader that
   * loops on `next` still yields to the event loop every {@linkcode BATCH_SLOTS} datagrams).
   * The view is valid until the next call. Null when nothing is waiting (or after `close`).
   */
  next(): [Uint8Array, Deno.NetAddr] | null {
    while (!this.#closed) {
      if (this.#recvNext >= this.#recvCount && !this.#refill()) return null;
      const m = this.#recv!;
      const i = this.#recvNext++;
      const header = m.headerOffset(i);
      if (m.view.getInt32(header + MSG_FLAGS, true) & MSG_TRUNC) {
        this.receiveTruncated++;
        continue;
      }
      const length = m.view.getUint32(header + MSG_LEN, true);
      const from = this.#recvNames.decode(m.bytes, m.nameOffset(i));
      if (!from) continue; // not an IP address: cannot come from a UDP/IP socket
      const start = m.slotOffset(i);
      return [m.bytes.subarray(start, start + length), from];
    }
    return null;
  }

  #refill(): boolean {
    if (!this.#refillAllowed) return false;
    this.#refillAllowed = false;
    this.#recvCount = 0;
    this.#recvNext = 0;
    const m = this.#recv ??= new MessageArray();
    for (let i = 0; i < BATCH_SLOTS; i++) {
      m.view.setUint32(m.headerOffset(i) + MSG_NAMELEN, SOCKADDR_BYTES, true);
    }
    while (true) {
      const n = this.#lib.symbols.recvmmsg(this.#fd, m.bytes, BATCH_SLOTS, MSG_DONTWAIT, null);
      if (n > 0) {
        this.#recvCount = n;
        return true;
      }
      // EAGAIN: empty. ECONNREFUSED and the like (an ICMP error queued on the socket) are
      // consumed by this call and skipped, as the Deno receive path does.
      if (n < 0 && this.#errno.getInt32() === EINTR) continue;
      return false;
    }
  }

  /** Stop using the fd (before the socket closes; the fd number may be reused after). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#sendData.fill(undefined);
    this.#sendAddr.fill(undefined);
    this.#sendCount = 0;
    this.#reservedAddr = undefined;
    releaseLibc();
  }
}

const NONE: Unsent = [];

/**
 * `BATCH_SLOTS` mmsghdrs, each with one iovec over its own slot and its own sockaddr, laid out
 * once in one buffer whose backing store never moves. For sending, {@linkcode setMessage}
 * points a header at a run of consecutive slots (one GSO send) instead.
 */
class MessageArray {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly #iovecs = BATCH_SLOTS * MMSGHDR_BYTES;
  readonly #names = this.#iovecs + BATCH_SLOTS * IOVEC_BYTES;
  readonly #controls = this.#names + BATCH_SLOTS * SOCKADDR_BYTES;
  readonly #slots = this.#controls + BATCH_SLOTS * CMSG_BYTES;
  /** Absolute addresses of each slot's sockaddr, iovec and control message. */
  readonly #namePointers: bigint[] = [];
  readonly #iovecPointers: bigint[] = [];
  readonly #controlPointers: bigint[] = [];
  /** A view of each datagram slot. */
  readonly slots: Uint8Array[] = [];

  constructor() {
    this.bytes = new Uint8Array(this.#slots + BATCH_SLOTS * SLOT_BYTES);
    this.view = new DataView(this.bytes.buffer);
    const base = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.bytes)));
    for (let i = 0; i < BATCH_SLOTS; i++) {
      this.#namePointers.push(base + BigInt(this.nameOffset(i)));
      this.#iovecPointers.push(base + BigInt(this.iovecOffset(i)));
      this.#controlPointers.push(base + BigInt(this.#controls + i * CMSG_BYTES));
      const control = this.#controls + i * CMSG_BYTES;
      this.view.setBigUint64(control, BigInt(CMSG_LEN_UDP_SEGMENT), true);
      this.view.setInt32(control + 8, SOL_UDP, true);
      this.view.setInt32(control + 12, UDP_SEGMENT, true);
      const iovec = this.iovecOffset(i);
      this.view.setBigUint64(iovec, base + BigInt(this.slotOffset(i)), true);
      this.view.setBigUint64(iovec + 8, BigInt(SLOT_BYTES), true);
      this.setMessage(i, i, 1, SOCKADDR_BYTES, 0);
      this.slots.push(this.bytes.subarray(this.slotOffset(i), this.slotOffset(i) + SLOT_BYTES));
    }
  }

  /**
   * Header `k` sends slots `slot .. slot + count - 1` to the sockaddr of `slot`; with
   * `segmentSize` > 0 as one UDP GSO send (the kernel cuts it into datagrams of that size).
   */
  setMessage(k: number, slot: number, count: number, nameLength: number, segmentSize: number) {
    const header = this.headerOffset(k);
    this.view.setBigUint64(header + MSG_NAME, this.#namePointers[slot]!, true);
    this.view.setUint32(header + MSG_NAMELEN, nameLength, true);
    this.view.setBigUint64(header + MSG_IOV, this.#iovecPointers[slot]!, true);
    this.view.setBigUint64(header + MSG_IOVLEN, BigInt(count), true);
    if (segmentSize > 0) {
      this.view.setUint16(this.#controls + k * CMSG_BYTES + 16, segmentSize, true);
      this.view.setBigUint64(header + MSG_CONTROL, this.#controlPointers[k]!, true);
      this.view.setBigUint64(header + MSG_CONTROLLEN, BigInt(CMSG_BYTES), true);
    } else {
      this.view.setBigUint64(header + MSG_CONTROL, 0n, true);
      this.view.setBigUint64(header + MSG_CONTROLLEN, 0n, true);
    }
  }

  headerOffset(i: number): number {
    return i * MMSGHDR_BYTES;
  }

  iovecOffset(i: number): number {
    return this.#iovecs + i * IOVEC_BYTES;
  }

  nameOffset(i: number): number {
    return this.#names + i * SOCKADDR_BYTES;
  }

  slotOffset(i: number): number {
    return this.#slots + i * SLOT_BYTES;
  }
}

/** Writes `sockaddr_in`/`sockaddr_in6` for literal addresses, parsing each host name once. */
class SockaddrEncoder {
  readonly #cache = new Map<string, Uint8Array>();

  /** Bytes written at `offset` (16 or 28), or 0 when `addr` is not a literal IP address. */
  encode(addr: Deno.NetAddr, out: Uint8Array, offset: number): number {
    let ip = this.#cache.get(addr.hostname);
    if (ip === undefined) {
      ip = parseIpv4(addr.hostname) ?? parseIpv6(addr.hostname) ?? EMPTY;
      if (this.#cache.size >= 1024) this.#cache.clear();
      this.#cache.set(addr.hostname, ip);
    }
    if (ip.length === 0 || !Number.isInteger(addr.port) || addr.port < 0 || addr.port > 65535) {
      return 0;
    }
    out.fill(0, offset, offset + SOCKADDR_BYTES);
    out[offset + 2] = addr.port >> 8;
    out[offset + 3] = addr.port & 0xff;
    if (ip.length === 4) {
      out[offset] = AF_INET;
      out.set(ip, offset + 4);
      return SOCKADDR_IN_BYTES;
    }
    out[offset] = AF_INET6;
    out.set(ip, offset + 8);
    return SOCKADDR_IN6_BYTES;
  }
}

const EMPTY = new Uint8Array(0);

/**
 * Turns received sockaddrs into `Deno.NetAddr`s spelled exactly like Deno's own receive (Rust's
 * `IpAddr` display), reusing one object per peer: a listener sees few peers, many times.
 */
class SockaddrDecoder {
  readonly #cache = new Map<string, Deno.NetAddr>();
  #lastKey = "";
  #lastAddr: Deno.NetAddr | undefined;

  decode(bytes: Uint8Array, offset: number): Deno.NetAddr | undefined {
    const family = bytes[offset]! | (bytes[offset + 1]! << 8);
    const addrLength = family === AF_INET ? 4 : family === AF_INET6 ? 16 : 0;
    if (addrLength === 0) return undefined;
    const addrStart = offset + (family === AF_INET ? 4 : 8);
    let key = family === AF_INET ? "4" : "6";
    key += String.fromCharCode(bytes[offset + 2]!, bytes[offset + 3]!);
    for (let i = 0; i < addrLength; i++) key += String.fromCharCode(bytes[addrStart + i]!);
    if (key === this.#lastKey) return this.#lastAddr;
    let addr = this.#cache.get(key);
    if (!addr) {
      const ip = bytes.subarray(addrStart, addrStart + addrLength);
      addr = Object.freeze({
        transport: "udp" as const,
        hostname: ip.length === 4 ? formatIpv4(ip) : formatIpv6(ip),
        port: (bytes[offset + 2]! << 8) | bytes[offset + 3]!,
      });
      if (this.#cache.size >= 1024) this.#cache.clear();
      this.#cache.set(key, addr);
    }
    this.#lastKey = key;
    this.#lastAddr = addr;
    return addr;
  }
}

/** The 4 bytes of a dotted-quad IPv4 address, or undefined. */
export function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const part = parts[i]!;
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) return undefined;
    out[i] = Number(part);
  }
  return out;
}

/**
 * The 16 bytes of an IPv6 address ("::" compression and a dotted-quad tail allowed), or
 * undefined (also for a zone such as "fe80::1%eth0": the scope id is not carried).
 */
export function parseIpv6(text: string): Uint8Array | undefined {
  if (!text.includes(":") || text.includes("%")) return undefined;
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const words: number[][] = [];
  for (const half of halves) {
    const groups = half === "" ? [] : half.split(":");
    const out: number[] = [];
    for (let g = 0; g < groups.length; g++) {
      const group = groups[g]!;
      if (g === groups.length - 1 && group.includes(".") && half === halves.at(-1)) {
        const v4 = parseIpv4(group);
        if (!v4) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(group)) {
        out.push(parseInt(group, 16));
      } else {
        return undefined;
      }
    }
    words.push(out);
  }
  const head = words[0]!;
  const tail = words[1] ?? [];
  const zeros = 8 - head.length - tail.length;
  if (halves.length === 1 ? zeros !== 0 : zeros < 1) return undefined;
  const all = [...head, ...new Array<number>(halves.length === 1 ? 0 : zeros).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  all.forEach((word, i) => {
    bytes[2 * i] = word >> 8;
    bytes[2 * i + 1] = word & 0xff;
  });
  return bytes;
}

function formatIpv4(b: Uint8Array): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

/** RFC 5952 text, as Rust prints it: IPv4-mapped as "::ffff:a.b.c.d", longest zero run "::". */
export function formatIpv6(b: Uint8Array): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((b[i]! << 8) | b[i + 1]!);
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
    return `::ffff:${formatIpv4(b.subarray(12))}`;
  }
  let bestStart = -1;
  let bestLength = 1; // a single zero word is not compressed
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(":");
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLength))}`;
}

/**
 * The fd of the one UDP socket of this process bound to `addr`, or undefined when there is
 * none or more than one (e.g. SO_REUSEPORT): batching the wrong fd must never happen. A socket
 * without SO_REUSEADDR/SO_REUSEPORT owns its address alone, so the search stops there; it
 * starts at the highest fd, where a new socket usually is.
 */
function findUdpFd(lib: Libc, addr: Deno.NetAddr): number | undefined {
  const expected = new Uint8Array(SOCKADDR_BYTES);
  const expectedLength = new SockaddrEncoder().encode(addr, expected, 0);
  if (expectedLength === 0) return undefined;
  const name = new Uint8Array(SOCKADDR_BYTES);
  const nameLength = new Uint32Array(1);
  const option = new Int32Array(1);
  const optionLength = new Uint32Array(1);
  const getOption = (fd: number, name: number): number | undefined => {
    optionLength[0] = 4;
    return lib.symbols.getsockopt(fd, SOL_SOCKET, name, option, optionLength) === 0
      ? option[0]
      : undefined;
  };
  const isOurs = (fd: number): boolean => {
    nameLength[0] = SOCKADDR_BYTES;
    if (lib.symbols.getsockname(fd, name, nameLength) !== 0) return false; // not a socket
    if (nameLength[0] !== expectedLength || !sameSockaddr(name, expected)) return false;
    return getOption(fd, SO_TYPE) === SOCK_DGRAM;
  };
  const alone = (fd: number) =>
    getOption(fd, SO_REUSEADDR) === 0 && getOption(fd, SO_REUSEPORT) === 0;
  // Sockets opened one after another usually get consecutive fds: try those first.
  for (let fd = lastFoundFd + 1; fd <= lastFoundFd + 4; fd++) {
    if (isOurs(fd) && alone(fd)) return lastFoundFd = fd;
  }
  const fds: number[] = [];
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    const fd = Number(entry.name);
    if (Number.isInteger(fd)) fds.push(fd);
  }
  fds.sort((a, b) => b - a);
  let found: number | undefined;
  for (const fd of fds) {
    if (!isOurs(fd)) continue;
    if (found !== undefined) return undefined;
    found = fd;
    if (alone(fd)) break;
  }
  if (found !== undefined) lastFoundFd = found;
  return found;
}

/** Where the last search found its socket (a hint for the next one). */
let lastFoundFd = 2;

/** Family, port and address equal (flow info and scope id ignored). */
function sameSockaddr(a: Uint8Array, b: Uint8Array): boolean {
  const end = a[0] === AF_INET ? 8 : 24;
  for (let i = 0; i < end; i++) {
    if (i >= 4 && i < 8 && a[0] === AF_INET6) continue; // sin6_flowinfo
    if (a[i] !== b[i]) return false;
  }
  return true;
}
