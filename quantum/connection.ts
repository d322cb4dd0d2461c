/**
 * One Quantum connection: the reliability, flow-control and lifecycle state machine plus its
 * Web Streams. The endpoint feeds it decoded packets; it sends through its host. Time comes
 * from the injected clock, read once per entry (packet, timer, application call).
 * @module
 */
import { AppError } from "../kernel/mod.ts";
import type { Clock, Timer } from "./clock.ts";
import type {
  CongestionController,
  CongestionControllerFactory,
  SentPacket,
} from "./congestion.ts";
import { fecHooks, type FecHookStats, type FecOptions } from "./fec_hooks.ts";
import type { DatagramHooks, DatagramHooksFactory } from "./hooks.ts";
import { Pacer } from "./pacer.ts";
import { RttEstimator, type RttOptions } from "./rtt.ts";
import {
  type AckInfo,
  decodePacket,
  encodePacket,
  FLAG,
  MAX_PAYLOAD_SIZE,
  MAX_SACK_BLOCKS,
  type Packet,
} from "./wire.ts";

/** Why a connection closed. */
export type CloseReason =
  /** Graceful: both FINs sent and acknowledged, all data delivered. */
  | "closed"
  /** This side called `abort()` (an RST was sent). */
  | "aborted"
  /** The peer sent an RST. */
  | "reset"
  /** Nothing received for the idle timeout. */
  | "idle_timeout"
  /** The handshake did not complete in time. */
  | "handshake_timeout"
  /** `close()` did not finish (peer never sent FIN / never acked) within the close timeout. */
  | "close_timeout"
  /** The listener (or dialing endpoint) shut down. */
  | "listener_closed"
  /** The peer violated the protocol in a way the connection cannot survive. */
  | "protocol_error";

/** How a connection ended; `closed` resolves with it exactly once. */
export interface CloseInfo {
  /** Machine-readable reason. */
  reason: CloseReason;
  /** Human-readable detail (the abort reason, for instance). */
  message: string;
  /** True when the peer caused it (RST or FIN handshake completed by the peer's close). */
  remote: boolean;
}

/** Why a datagram or packet was dropped. */
export type DropReason =
  | "truncated"
  | "bad_magic"
  | "bad_version"
  | "bad_checksum"
  | "length_mismatch"
  | "bad_sack"
  | "bad_handshake"
  /** Ack of a sequence number never sent. */
  | "bad_ack"
  /** Data beyond the advertised receive window. */
  | "out_of_window"
  /** Connection id unknown to this endpoint. */
  | "unknown_connection"
  /** Cookie echo failed verification. */
  | "bad_cookie"
  /** SYN with a connection id that is not a UUIDv7. */
  | "bad_connection_id"
  /** Too many connections waiting to be accepted. */
  | "backlog_full"
  /** FEC parity without an FEC hook. */
  | "fec_unsupported"
  /** Packet that makes no sense in the current state (e.g. data before the handshake). */
  | "unexpected";

/** A snapshot of one connection's counters and estimates. */
export interface ConnectionStats {
  /** "connecting" | "open" | "closed". */
  state: ConnectionState;
  /** Smoothed RTT (ms; 0 before a sample). */
  rttMs: number;
  /** RTT variance (ms). */
  rttVarMs: number;
  /** Minimum RTT (ms; 0 before a sample). */
  minRttMs: number;
  /** Current retransmission timeout including backoff (ms). */
  rtoMs: number;
  /** Congestion controller name. */
  congestionControl: string;
  /** Congestion window (bytes). */
  cwndBytes: number;
  /** Pacing rate (bytes/s; Infinity when unpaced). */
  pacingRate: number;
  /** Bytes in flight. */
  bytesInFlight: number;
  /** Peer's advertised receive window (packets). */
  peerWindowPackets: number;
  /** Our advertised receive window (packets). */
  receiveWindowPackets: number;
  /** Application bytes queued or unacknowledged on the send side. */
  sendBufferedBytes: number;
  /** Bytes received but not yet read by the application (in order + out of order). */
  receiveBufferedBytes: number;
  /** Payload bytes sent (including retransmissions). */
  bytesSent: number;
  /** Payload bytes received (including duplicates). */
  bytesReceived: number;
  /** Datagrams sent. */
  packetsSent: number;
  /** Datagrams received for this connection. */
  packetsReceived: number;
  /** Data packets retransmitted. */
  retransmits: number;
  /** Packets declared lost by SACK/duplicate-ACK detection (fast retransmit). */
  fastRetransmits: number;
  /** Retransmission (probe) timer expiries; each sends at most two probes, see PROTOCOL.md. */
  rtoCount: number;
  /** Tail loss probes sent (RACK-TLP style, 2·SRTT after the last send). */
  tailLossProbes: number;
  /** Times ACK-detected loss followed repeated timeouts and the congestion window collapsed. */
  persistentCongestion: number;
  /** Duplicate data packets received. */
  duplicates: number;
  /** Packets recovered by an FEC hook that delivered data not received otherwise. */
  fecRecovered: number;
  /** FEC counters of the built-in FEC hooks (absent with custom `datagramHooks`). */
  fec?: FecHookStats;
  /** Peer address changes. */
  migrations: number;
  /** Drops by reason. */
  drops: Partial<Record<DropReason, number>>;
}

/** Connection lifecycle state. */
export type ConnectionState =
  /** Client waiting for SYN+ACK. */
  | "connecting"
  /** Handshake done; data may flow (FINs may be in progress). */
  | "open"
  /** Terminal. */
  | "closed";

/** Tunables shared by listen() and dial(). */
export interface ConnectionOptions {
  /**
   * Congestion control: `"bbr"` (BBR v1, the default), `"newreno"`, or a factory for a custom
   * controller.
   */
  congestion?: CongestionControl;
  /**
   * Reed-Solomon FEC for the data this side sends (`fec_hooks.ts`): `false` (default) or
   * options (`{}` = fixed 10 data + 3 parity, 3 ms flush). Receiving FEC needs no option: every
   * connection decodes FEC packets the peer sends and reports the loss it sees. Ignored when
   * `datagramHooks` is given.
   */
  fec?: false | FecOptions;
  /** Maximum payload per packet in bytes (default and max 1088). */
  maxPayload?: number;
  /** Receive buffer in packets: the most we advertise and buffer (default 1024). */
  receiveWindow?: number;
  /** Send buffer limit in bytes: writes wait while this much is queued/unacked (default 1 MiB). */
  sendBufferBytes?: number;
  /** Close after this long without receiving anything (ms, default 30 s). */
  idleTimeoutMs?: number;
  /** Send a keepalive ping after this long without sending (ms, default idle / 3). */
  keepaliveMs?: number;
  /** Hold an ACK at most this long (ms, default 5). */
  maxAckDelayMs?: number;
  /** Give up a graceful close after this long and reset (ms, default 10 s). */
  closeTimeoutMs?: number;
  /** RTO tuning (see rtt.ts). */
  rtt?: RttOptions;
  /** Datagram hooks for each connection; replaces the built-in FEC hooks. */
  datagramHooks?: DatagramHooksFactory;
}

/** A congestion controller by name, or a factory. */
export type CongestionControl = "bbr" | "newreno" | CongestionControllerFactory;

/**
 * A reliable, ordered, flow-controlled byte stream over UDP.
 *
 * @example
 * ```ts
 * const conn = await dial({ hostname: "127.0.0.1", port: 9000 });
 * const writer = conn.writable.getWriter();
 * await writer.write(new TextEncoder().encode("hello"));
 * await writer.close(); // FIN: resolves once the peer acknowledged everything
 * for await (const chunk of conn.readable) console.log(chunk.length);
 * await conn.close();
 * console.log((await conn.closed).reason); // "closed"
 * ```
 */
export interface QuantumConnection {
  /** UUIDv7 connection id. */
  readonly id: string;
  /** Current peer address (changes on migration). */
  readonly remoteAddr: Deno.NetAddr;
  /**
   * Reliable ordered bytes, with backpressure (nothing is read from the network buffer until
   * pulled). Chunks are views that may share one ArrayBuffer with data not read yet: read
   * them, copy them, but do not transfer (detach) their buffer.
   */
  readonly readable: ReadableStream<Uint8Array>;
  /** Writes wait while the send buffer is full; closing it sends FIN (half-close). */
  readonly writable: WritableStream<Uint8Array>;
  /** "connecting" | "open" | "closed". */
  readonly state: ConnectionState;
  /** Counters and estimates. */
  stats(): ConnectionStats;
  /**
   * Graceful close: FIN after all queued data, wait for the peer's FIN and the ACK of ours,
   * then release the socket. Resolves even if the close ends abnormally (inspect `closed`).
   */
  close(): Promise<void>;
  /** Abort immediately: send RST, error both streams. */
  abort(reason?: string): void;
  /** Resolves once, with the reason, when the connection ends. */
  readonly closed: Promise<CloseInfo>;
}

/** @internal The last word of a closed connection, repeated to late packets. */
export interface FinalPacket {
  /** The final ACK (graceful) or an RST. */
  packet: Uint8Array;
  /** True after a graceful close. */
  graceful: boolean;
}

/** @internal What a connection needs from its endpoint. */
export interface ConnectionHost {
  send(datagram: Uint8Array, addr: Deno.NetAddr): void;
  /** Encode and send (optional: saves a buffer per packet where the socket offers it). */
  sendPacket?(packet: Packet, addr: Deno.NetAddr): void;
  onClosed(conn: Connection, final: FinalPacket, lingerMs: number): Promise<void> | void;
}

interface Segment extends SentPacket {
  seq: number;
  payload: Uint8Array;
  fin: boolean;
  txCount: number;
  txIndex: number;
  /**
   * When the latest transmission is a probe (TLP or PTO) of a packet still in flight: the
   * transmission index of the copy sent before it, else 0. An ACK cannot tell which copy
   * arrived, so it only proves this earlier one (see #onAck).
   */
  probeOf: number;
  sacked: boolean;
  lost: boolean;
  inFlight: boolean;
}

const OVERHEAD = 48;
/** Most bytes one read of `readable` returns. */
const READ_CHUNK_BYTES = 64 * 1024;
/** Minimum tail-loss-probe delay (ms). */
const TLP_MIN_MS = 2;
/** Tail loss probes before the RTO may fire (QUIC sends two probes). */
const MAX_TLPS = 2;
/**
 * Consecutive retransmission-timer expiries without an ACK after which ACK-detected loss
 * counts as persistent congestion (≈ RFC 9002 §7.6's 3·PTO: PTO + 2·PTO with backoff).
 */
const PERSISTENT_CONGESTION_TIMEOUTS = 2;
/** FIN retransmissions after which a peer that already finished is assumed gone. */
const FIN_RETRIES = 4;
/** Longest wait between zero-window probes (ms). */
const PERSIST_MAX_MS = 1000;
const PACKET_THRESHOLD = 3;
/** In-order data packets after which an ACK leaves at once (ACK decimation's bound). */
const ACK_EVERY_PACKETS = 8;
/** Shortest wait for pacing tokens (ms): timer granularity, and a batch per wake-up. */
const PACING_MIN_WAKE_MS = 1;
/** Largest data payload with FEC on: a parity datagram is the longest protected datagram + 52. */
export const MAX_FEC_PAYLOAD_SIZE = MAX_PAYLOAD_SIZE - 44;
const MAX_SEQ = 0xfffffff0;
const EMPTY = new Uint8Array(0);

/** @internal The connection implementation behind the public QuantumConnection. */
export class Connection implements QuantumConnection {
  readonly id: string;
  readonly role: "client" | "server";
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  readonly closed: Promise<CloseInfo>;

  #host: ConnectionHost;
  #clock: Clock;
  #cc: CongestionController;
  #rtt: RttEstimator;
  #hooks: DatagramHooks | null = null;
  #hooksFactory: DatagramHooksFactory | undefined;
  #state: ConnectionState;
  #remoteAddr: Deno.NetAddr;
  #maxPayload: number;
  #capacity: number;
  #sendLimit: number;
  #idleTimeout: number;
  #keepalive: number;
  #maxAckDelay: number;
  #closeTimeout: number;
  #resolveClosed!: (info: CloseInfo) => void;
  #released: Promise<void> | void = undefined;
  #closeInfo: CloseInfo | null = null;

  // Handshake.
  #cookie: Uint8Array = EMPTY;
  #confirmed: boolean;
  #handshakeStart: number;
  #handshakeDeadline = Infinity;
  #handshakeTimeout = 10_000;
  #onOpen: ((error?: Error) => void) | null = null;

  // Send side.
  #sendQueue: Uint8Array[] = [];
  #sendQueueBytes = 0;
  #flushDeferred = false;
  #unackedBytes = 0;
  #nextSeq = 1;
  #sndUna = 1;
  #segments = new Map<number, Segment>();
  #lostQueue: number[] = [];
  #bytesInFlight = 0;
  #txCounter = 0;
  #largestAckedTx = 0;
  #peerWindow: number;
  #finQueued = false;
  #finSeq = -1;
  #finAcked = false;
  #rtoDeadline = Infinity;
  #lossDeadline = Infinity;
  #tlpDeadline = Infinity;
  #tlpCount = 0;
  #finRetries = 0;
  #persistDeadline = Infinity;
  #persistBackoff = 0;
  #pacer: Pacer;
  #pacingDeadline = Infinity;
  #lastSendTime: number;
  #writeWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  #finWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  #closeDeadline = Infinity;

  // Receive side.
  #rcvNext = 1;
  #outOfOrder = new Map<number, { payload: Uint8Array; fin: boolean }>();
  #ranges: Array<[number, number]> = [];
  #lastReceivedSeq = -1;
  #dataAccepted = 0;
  #ready: Uint8Array[] = [];
  #readyBytes = 0;
  /** Where received payloads are copied to (see #keep). */
  #arena = EMPTY;
  #arenaUsed = 0;
  #arenaSize = 4096;
  #oooBytes = 0;
  #peerFinSeq = -1;
  #eof = false;
  #discard = false;
  #pullPending: ReadableStreamDefaultController<Uint8Array> | null = null;
  #pullResolve: (() => void) | null = null;
  #readableDone = false;
  #ackPending = 0;
  #ackImmediate = false;
  /** Two or more packets wait for an ACK: send one at the end of this turn (receive batch). */
  #ackThisTurn = false;
  #turnAckScheduled = false;
  #ackDeadline = Infinity;
  #firstUnackedAt = 0;
  #lastAdvertised = 0;
  #lastRecvTime: number;

  #timer: Timer | null = null;
  #timerAt = Infinity;
  #stats = {
    bytesSent: 0,
    bytesReceived: 0,
    packetsSent: 0,
    packetsReceived: 0,
    retransmits: 0,
    fastRetransmits: 0,
    rtoCount: 0,
    duplicates: 0,
    fecRecovered: 0,
    migrations: 0,
    tailLossProbes: 0,
    persistentCongestion: 0,
  };
  #drops: Partial<Record<DropReason, number>> = {};

  constructor(init: {
    id: string;
    role: "client" | "server";
    remoteAddr: Deno.NetAddr;
    host: ConnectionHost;
    clock: Clock;
    options: ConnectionOptions;
    congestion: CongestionControllerFactory;
    peer?: { maxPayload: number; window: number };
    handshakeTimeoutMs?: number;
  }) {
    const o = init.options;
    this.id = init.id;
    this.role = init.role;
    this.#remoteAddr = init.remoteAddr;
    this.#host = init.host;
    this.#clock = init.clock;
    const now = init.clock.now();
    this.#maxPayload = Math.min(o.maxPayload ?? MAX_PAYLOAD_SIZE, MAX_PAYLOAD_SIZE);
    if (!(this.#maxPayload >= 16)) throw new RangeError("Invalid maxPayload: expected 16..1088");
    this.#capacity = o.receiveWindow ?? 1024;
    if (!(this.#capacity >= 2)) throw new RangeError("Invalid receiveWindow: expected >= 2");
    this.#sendLimit = o.sendBufferBytes ?? 1 << 20;
    this.#idleTimeout = o.idleTimeoutMs ?? 30_000;
    this.#keepalive = o.keepaliveMs ?? this.#idleTimeout / 3;
    this.#maxAckDelay = o.maxAckDelayMs ?? 5;
    this.#closeTimeout = o.closeTimeoutMs ?? 10_000;
    this.#rtt = new RttEstimator({ maxAckDelay: this.#maxAckDelay, ...o.rtt });
    this.#hooksFactory = o.datagramHooks ?? fecHooks(o.fec ?? false);
    if (o.fec && !o.datagramHooks) {
      // Parity of the largest data datagram must fit MAX_DATAGRAM_SIZE (PROTOCOL.md, FEC).
      this.#maxPayload = Math.min(this.#maxPayload, MAX_FEC_PAYLOAD_SIZE);
    }
    this.#handshakeTimeout = init.handshakeTimeoutMs ?? 10_000;
    this.#state = init.role === "client" ? "connecting" : "open";
    this.#confirmed = init.role === "server";
    this.#peerWindow = init.peer?.window ?? 2;
    if (init.peer) {
      this.#maxPayload = Math.min(this.#maxPayload, Math.max(16, init.peer.maxPayload));
    }
    this.#cc = init.congestion({ mss: this.#maxPayload + OVERHEAD, now });
    this.#pacer = new Pacer({ now, burstBytes: 10 * (this.#maxPayload + OVERHEAD), burstMs: 2 });
    this.#lastSendTime = now;
    this.#lastRecvTime = now;
    this.#handshakeStart = now;
    this.#lastAdvertised = this.#capacity;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.readable = new ReadableStream<Uint8Array>({
      pull: (controller) => this.#pull(controller),
      cancel: () => {
        this.#discard = true;
        this.#ready = [];
        this.#readyBytes = 0;
        this.#readableDone = true;
        this.#afterRead(this.#clock.now());
      },
    }, { highWaterMark: 0 });
    this.writable = new WritableStream<Uint8Array>({
      write: (chunk) => this.#write(chunk),
      close: () => this.#finish(),
      abort: (reason) => this.abort(reason === undefined ? "writable aborted" : String(reason)),
    });
    if (init.role === "server") this.#startHooks(now);
  }

  get state(): ConnectionState {
    return this.#state;
  }

  #isClosed(): boolean {
    return this.#state === "closed";
  }

  get remoteAddr(): Deno.NetAddr {
    return this.#remoteAddr;
  }

  /** Client: send the SYN and resolve when SYN+ACK arrives. */
  open(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#onOpen = (error) => (error ? reject(error) : resolve());
      const now = this.#clock.now();
      this.#handshakeDeadline = now + this.#handshakeTimeout;
      this.#sendSyn(now);
      this.#armTimer(now);
    });
  }

  // ---------------------------------------------------------------- public operations

  stats(): ConnectionStats {
    return {
      state: this.#state,
      rttMs: this.#rtt.srtt,
      rttVarMs: this.#rtt.rttvar,
      minRttMs: this.#rtt.hasSample ? this.#rtt.minRtt : 0,
      rtoMs: this.#rtt.rto(),
      congestionControl: this.#cc.name,
      cwndBytes: this.#cc.congestionWindow(),
      pacingRate: this.#cc.pacingRate(),
      bytesInFlight: this.#bytesInFlight,
      peerWindowPackets: this.#peerWindow,
      receiveWindowPackets: this.#window(),
      sendBufferedBytes: this.#sendQueueBytes + this.#unackedBytes,
      receiveBufferedBytes: this.#readyBytes + this.#oooBytes,
      ...this.#stats,
      drops: { ...this.#drops },
      ...(this.#hooks?.stats ? { fec: this.#hooks.stats() } : {}),
    };
  }

  /** Count a drop attributed to this connection (also used by a dialing endpoint). */
  countDrop(reason: DropReason): void {
    this.#drops[reason] = (this.#drops[reason] ?? 0) + 1;
  }

  /** Graceful close: FIN after all queued data, wait for the peer's FIN and our FIN's ACK. */
  async close(): Promise<void> {
    if (this.#state === "connecting") {
      this.abort("closed before the handshake completed");
    } else if (this.#state === "open") {
      const now = this.#clock.now();
      if (this.#closeDeadline === Infinity) this.#closeDeadline = now + this.#closeTimeout;
      this.#queueFin(now);
      this.#armTimer(now);
    }
    await this.closed;
    await this.#released;
  }

  /** Abort with RST. */
  abort(reason = "aborted"): void {
    if (this.#state === "closed") return;
    this.#sendControl(FLAG.RST, this.#clock.now());
    this.#closeWith({ reason: "aborted", message: reason, remote: false });
  }

  /** Endpoint shutdown. */
  shutdown(): void {
    if (this.#state === "closed") return;
    this.#sendControl(FLAG.RST, this.#clock.now());
    this.#closeWith({ reason: "listener_closed", message: "endpoint closed", remote: false });
  }

  // ---------------------------------------------------------------- receive path

  /** Handle one decoded packet from `from`. */
  receive(packet: Packet, datagram: Uint8Array, from: Deno.NetAddr, now: number): void {
    if (this.#state === "closed") return;
    this.#stats.packetsReceived++;
    if (packet.flags & FLAG.FEC) {
      const fec = packet.fec!;
      const hooks = this.#hooks;
      if (hooks?.onReceiveFec) {
        const recovered = hooks.onReceiveFec(packet, datagram, now) ?? [];
        for (const bytes of recovered) {
          const result = decodePacket(bytes);
          if (!result.ok) {
            this.countDrop(result.reason);
            continue;
          }
          if (result.packet.connectionId !== this.id) continue;
          const acceptedBefore = this.#dataAccepted;
          this.#process(result.packet, from, now, true);
          if (this.#dataAccepted > acceptedBefore) this.#stats.fecRecovered++;
          if (this.#isClosed()) return;
        }
      }
      if (fec.dataShards > 0 && fec.index >= fec.dataShards) {
        if (!hooks?.onReceiveFec) this.countDrop("fec_unsupported");
        this.#afterEvent(now);
        return;
      }
    }
    this.#process(packet, from, now, false);
    this.#afterEvent(now);
  }

  #process(packet: Packet, from: Deno.NetAddr, now: number, recovered: boolean): void {
    const flags = packet.flags;
    if (flags & FLAG.RST) {
      if (this.#onlyFinOutstanding()) {
        // Both directions are complete except the ACK of our FIN: the peer closed and then
        // forgot the connection (its linger ended). Nothing was lost.
        this.#closeWith({
          reason: "closed",
          message: "closed (the peer had already forgotten the connection)",
          remote: true,
        });
      } else {
        this.#closeWith({ reason: "reset", message: "connection reset by peer", remote: true });
      }
      return;
    }
    if (this.#state === "connecting") {
      if ((flags & (FLAG.SYN | FLAG.ACK)) === (FLAG.SYN | FLAG.ACK) && packet.handshake) {
        this.#lastRecvTime = now;
        this.#cookie = packet.handshake.cookie.slice();
        this.#maxPayload = Math.min(this.#maxPayload, Math.max(16, packet.handshake.maxPayload));
        this.#peerWindow = packet.handshake.window;
        this.#state = "open";
        this.#handshakeDeadline = Infinity;
        if (!this.#rtt.hasSample && this.#handshakeStart >= 0) {
          // The SYN's RTT is valid only when the SYN was sent once (Karn).
          if (this.#synCount === 1) this.#rtt.addSample(now - this.#handshakeStart);
        }
        this.#startHooks(now);
        this.#ackImmediate = true;
        const onOpen = this.#onOpen;
        this.#onOpen = null;
        onOpen?.();
      } else {
        this.countDrop("unexpected");
      }
      return;
    }
    // Open.
    if (flags & FLAG.SYN) {
      if (this.role === "client" && flags & FLAG.ACK) this.#ackImmediate = true; // re-echo cookie
      this.#lastRecvTime = now;
      return;
    }
    if (this.role === "client" && !this.#confirmed) this.#confirmed = true;
    let advanced = false;
    if (flags & FLAG.ACK) {
      const info = packet.ackInfo!;
      const ack = packet.ack;
      if (ack > this.#nextSeq || ack < 1) {
        this.countDrop("bad_ack");
        return;
      }
      for (const [start, end] of info.sack) {
        if (start < ack || end > this.#nextSeq) {
          this.countDrop("bad_sack");
          return;
        }
      }
      if (ack >= this.#sndUna) {
        advanced = this.#onAck(ack, info, now, recovered);
      }
    }
    const hasData = packet.payload.length > 0 || (flags & FLAG.FIN) !== 0;
    if (hasData) {
      const accepted = this.#onData(packet.seq, packet.payload, (flags & FLAG.FIN) !== 0, now);
      if (accepted === "accepted") advanced = true;
      else if (accepted === "out_of_window") return;
    } else if (flags & FLAG.PSH) {
      this.#ackImmediate = true; // ping / keepalive / window probe
    }
    this.#lastRecvTime = now;
    // Migration: follow the address of any packet that passed validation, unless it carries
    // an ACK older than one already processed (a straggler from the old path). Retransmitted
    // data must count too: after a rebind the sender may only have duplicates to send.
    const stale = (flags & FLAG.ACK) !== 0 && packet.ack < this.#sndUna && !advanced;
    if (!stale && !sameAddr(from, this.#remoteAddr)) {
      this.#remoteAddr = { ...from };
      this.#stats.migrations++;
      this.#ackImmediate = true;
    }
  }

  /** Returns true when new data was acknowledged. */
  #onAck(ack: number, info: AckInfo, now: number, recovered: boolean): boolean {
    this.#peerWindow = info.window;
    const prior = this.#bytesInFlight;
    const acked: SentPacket[] = [];
    let newest: Segment | null = null;
    let advanced = false;
    // A retransmission acknowledged sooner than the min RTT was not what the ACK saw: the
    // original arrived (RFC 8985 §6.2). Its transmission index must not advance loss detection
    // (every packet sent before it would look lost) nor give an RTT sample.
    // A probe duplicates a packet still in flight, so its ACK proves only the earlier copy.
    const minRtt = this.#rtt.hasSample ? this.#rtt.minRtt : 0;
    const provenTx = (seg: Segment) => seg.probeOf || seg.txIndex;
    const isNewest = (seg: Segment) =>
      (!newest || provenTx(seg) > provenTx(newest)) &&
      (seg.probeOf > 0 || !(seg.txCount > 1 && now - seg.sentAt < minRtt));
    // Timer expiries since the last ACK of new data (reset below once this one advances).
    const timeouts = this.#rtt.backoff;
    while (this.#sndUna < ack) {
      const seg = this.#segments.get(this.#sndUna);
      if (seg) {
        if (!seg.sacked) {
          acked.push(snapshot(seg));
          if (isNewest(seg)) newest = seg;
        }
        this.#release(seg);
        this.#segments.delete(seg.seq);
      }
      this.#sndUna++;
      advanced = true;
    }
    for (const [start, end] of info.sack) {
      for (let seq = Math.max(start, this.#sndUna); seq < end; seq++) {
        const seg = this.#segments.get(seq);
        if (!seg || seg.sacked) continue;
        seg.sacked = true;
        if (seg.inFlight) {
          seg.inFlight = false;
          this.#bytesInFlight -= seg.bytes;
        }
        seg.lost = false;
        acked.push(snapshot(seg));
        if (isNewest(seg)) newest = seg;
        advanced = true;
      }
    }
    let rttSample: number | undefined;
    if (newest) {
      this.#largestAckedTx = Math.max(this.#largestAckedTx, provenTx(newest));
      if (newest.txCount === 1 && !recovered) {
        rttSample = now - newest.sentAt;
        this.#rtt.addSample(rttSample, Math.min(info.ackDelayMicros / 1000, this.#maxAckDelay));
      }
    }
    const lost = this.#detectLosses(now);
    if (advanced) {
      this.#rtt.resetBackoff();
      this.#persistBackoff = 0;
      this.#tlpCount = 0;
      this.#finRetries = 0;
      const outstanding = this.#hasOutstanding();
      this.#rtoDeadline = outstanding ? now + this.#rtt.rto() : Infinity;
      if (!outstanding) this.#tlpDeadline = Infinity; // nothing left to probe: no idle wake-up
    }
    if (acked.length > 0 || lost.length > 0) {
      this.#hooks?.onLossFeedback?.(acked.length, lost.length, now);
      this.#cc.onAck({
        now,
        acked,
        lost,
        ...(rttSample === undefined ? {} : { rttSample }),
        minRtt: this.#rtt.hasSample ? this.#rtt.minRtt : 0,
        priorBytesInFlight: prior,
        bytesInFlight: this.#bytesInFlight,
      });
    }
    // Loss found by ACKs after repeated timeouts: the path really was down (persistent
    // congestion), so the controller restarts from its minimum window. A timeout alone never
    // does this: after a scheduling stall the ACK shows the flight arrived and nothing changes.
    if (lost.length > 0 && timeouts >= PERSISTENT_CONGESTION_TIMEOUTS) {
      this.#stats.persistentCongestion++;
      this.#cc.onPersistentCongestion(now);
    }
    if (this.#finSeq >= 0 && this.#sndUna > this.#finSeq && !this.#finAcked) {
      this.#finAcked = true;
      for (const w of this.#finWaiters.splice(0)) w.resolve();
    }
    this.#wakeWriters();
    return advanced;
  }

  /**
   * Loss detection (RFC 6675 / QUIC): a packet is lost when 3 later transmissions were
   * acknowledged, or when a later transmission was acknowledged and it is older than
   * 9/8·RTT. Arms the loss timer for packets that may cross the time threshold later.
   */
  #detectLosses(now: number): SentPacket[] {
    const lost: SentPacket[] = [];
    this.#lossDeadline = Infinity;
    if (this.#largestAckedTx === 0) return lost;
    const rtt = Math.max(this.#rtt.srtt, this.#rtt.latest);
    // With FEC a loss is repaired once the group's parity arrives: leave it that long.
    const tolerance = this.#hooks?.reorderTolerance?.();
    const packetThreshold = Math.max(PACKET_THRESHOLD, tolerance?.packets ?? 0);
    const timeThreshold = Math.max(1, (9 / 8) * rtt) + (tolerance?.ms ?? 0);
    for (const seg of this.#segments.values()) {
      if (seg.txIndex >= this.#largestAckedTx) {
        // Segments are in sequence order and were first sent in that order: after one never
        // resent that went out after the newest ACKed, every later one did too.
        if (seg.txCount === 1) break;
        continue;
      }
      if (seg.sacked || !seg.inFlight) continue;
      if (
        this.#largestAckedTx - seg.txIndex >= packetThreshold ||
        seg.sentAt + timeThreshold <= now // same expression as the deadline below
      ) {
        seg.inFlight = false;
        seg.lost = true;
        this.#bytesInFlight -= seg.bytes;
        this.#lostQueue.push(seg.seq);
        lost.push(snapshot(seg));
      } else {
        this.#lossDeadline = Math.min(this.#lossDeadline, seg.sentAt + timeThreshold);
      }
    }
    if (lost.length > 0) {
      this.#lostQueue.sort((a, b) => a - b);
      this.#stats.fastRetransmits += lost.length;
    }
    return lost;
  }

  /** All our data is acknowledged but the FIN, and the peer's FIN was received. */
  #onlyFinOutstanding(): boolean {
    return this.#finSeq >= 0 && this.#sndUna >= this.#finSeq && this.#peerFinSeq >= 0 &&
      this.#rcvNext > this.#peerFinSeq;
  }

  #release(seg: Segment): void {
    if (seg.inFlight) {
      seg.inFlight = false;
      this.#bytesInFlight -= seg.bytes;
    }
    this.#unackedBytes -= seg.payload.length;
  }

  #hasOutstanding(): boolean {
    for (const seg of this.#segments.values()) if (!seg.sacked) return true;
    return false;
  }

  #onData(
    seq: number,
    payload: Uint8Array,
    fin: boolean,
    now: number,
  ): "accepted" | "duplicate" | "out_of_window" {
    this.#stats.bytesReceived += payload.length;
    if (seq < this.#rcvNext || this.#outOfOrder.has(seq)) {
      this.#stats.duplicates++;
      this.#ackImmediate = true;
      return "duplicate";
    }
    if (
      seq >= this.#rcvNext + this.#window() || (this.#peerFinSeq >= 0 && seq > this.#peerFinSeq)
    ) {
      this.countDrop("out_of_window");
      this.#ackImmediate = true;
      return "out_of_window";
    }
    this.#dataAccepted++;
    if (this.#ackPending === 0) this.#firstUnackedAt = now;
    this.#ackPending++;
    this.#lastReceivedSeq = seq;
    if (fin) this.#peerFinSeq = seq;
    const copy = this.#keep(payload);
    if (seq === this.#rcvNext) {
      this.#deliver(copy, fin);
      this.#rcvNext++;
      const hadGap = this.#outOfOrder.size > 0;
      while (true) {
        const next = this.#outOfOrder.get(this.#rcvNext);
        if (!next) break;
        this.#outOfOrder.delete(this.#rcvNext);
        this.#oooBytes -= next.payload.length;
        this.#deliver(next.payload, next.fin);
        this.#rcvNext++;
      }
      while (this.#ranges.length > 0 && this.#ranges[0]![1] <= this.#rcvNext) this.#ranges.shift();
      if (hadGap || fin) this.#ackImmediate = true;
    } else {
      this.#outOfOrder.set(seq, { payload: copy, fin });
      this.#oooBytes += copy.length;
      this.#insertRange(seq);
      this.#ackImmediate = true;
    }
    // ACK decimation: one ACK per receive batch (event-loop turn) once two packets wait,
    // at once after ACK_EVERY_PACKETS; gaps, FIN and duplicates were ACKed at once above.
    if (this.#ackPending >= ACK_EVERY_PACKETS) this.#ackImmediate = true;
    else if (this.#ackPending >= 2) this.#ackThisTurn = true;
    if (this.#ackDeadline === Infinity) this.#ackDeadline = now + this.#maxAckDelay;
    return "accepted";
  }

  /**
   * A copy of a received payload (the datagram buffer is reused), cut from a shared arena
   * rather than one small buffer each: fewer allocations, and payloads that arrive in order lie
   * back to back, so a read hands them out as one view without joining them (#takeReady).
   * Arena bytes are never reused: a full arena is left to the views that still hold it. Arenas
   * start small and double while data keeps coming (an idle connection holds little).
   */
  #keep(payload: Uint8Array): Uint8Array {
    const length = payload.length;
    if (this.#arenaUsed + length > this.#arena.length) {
      if (this.#arena.length > 0) this.#arenaSize = Math.min(2 * this.#arenaSize, READ_CHUNK_BYTES);
      this.#arena = new Uint8Array(Math.max(this.#arenaSize, length));
      this.#arenaUsed = 0;
    }
    const start = this.#arenaUsed;
    this.#arena.set(payload, start);
    this.#arenaUsed = start + length;
    return this.#arena.subarray(start, start + length);
  }

  #deliver(payload: Uint8Array, fin: boolean): void {
    if (payload.length > 0 && !this.#discard) {
      this.#ready.push(payload);
      this.#readyBytes += payload.length;
    }
    if (fin) this.#eof = true;
    this.#feedReader();
  }

  #insertRange(seq: number): void {
    const ranges = this.#ranges;
    let i = ranges.length;
    while (i > 0 && ranges[i - 1]![0] > seq) i--;
    const prev = ranges[i - 1];
    const next = ranges[i];
    if (prev && prev[1] === seq) {
      prev[1] = seq + 1;
      if (next && next[0] === seq + 1) {
        prev[1] = next[1];
        ranges.splice(i, 1);
      }
    } else if (next && next[0] === seq + 1) {
      next[0] = seq;
    } else {
      ranges.splice(i, 0, [seq, seq + 1]);
    }
  }

  #sackBlocks(): Array<readonly [number, number]> {
    const ranges = this.#ranges;
    if (ranges.length === 0) return [];
    const blocks: Array<readonly [number, number]> = [];
    const first = ranges.find(([s, e]) => s <= this.#lastReceivedSeq && this.#lastReceivedSeq < e);
    if (first) blocks.push([first[0], first[1]]);
    for (let i = ranges.length - 1; i >= 0 && blocks.length < MAX_SACK_BLOCKS; i--) {
      const r = ranges[i]!;
      if (r !== first) blocks.push([r[0], r[1]]);
    }
    return blocks;
  }

  /** Receive window in packets: capacity minus what waits for the reader. */
  #window(): number {
    return Math.max(0, this.#capacity - this.#ready.length);
  }

  // ---------------------------------------------------------------- readable / writable

  #pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> | void {
    if (this.#ready.length > 0 || this.#eof || this.#state === "closed") {
      this.#pullPending = controller;
      this.#feedReader();
      return;
    }
    return new Promise<void>((resolve) => {
      this.#pullPending = controller;
      this.#pullResolve = resolve;
    });
  }

  #feedReader(): void {
    const controller = this.#pullPending;
    if (!controller || this.#readableDone) return;
    const chunk = this.#takeReady();
    if (chunk) {
      this.#pullPending = null;
      controller.enqueue(chunk);
      this.#afterRead(this.#clock.now());
    } else if (this.#eof) {
      this.#pullPending = null;
      this.#readableDone = true;
      controller.close();
    } else if (this.#state === "closed") {
      this.#pullPending = null;
      this.#readableDone = true;
      const info = this.#closeInfo!;
      if (info.reason === "closed") controller.close();
      else controller.error(closeError(info));
    } else {
      return;
    }
    const resolve = this.#pullResolve;
    this.#pullResolve = null;
    resolve?.();
  }

  /** The waiting in-order payloads, joined up to 64 KiB (one read, not one per packet). */
  #takeReady(): Uint8Array | undefined {
    if (this.#ready.length <= READ_CHUNK_BYTES / MAX_PAYLOAD_SIZE && this.#outOfOrder.size === 0) {
      // All received data leaves with this read: the reader's chunk keeps the arena alive, the
      // connection need not (the next payload starts a new one).
      this.#arena = EMPTY;
      this.#arenaUsed = 0;
    }
    const first = this.#ready.shift();
    if (!first || this.#ready.length === 0 || first.length >= READ_CHUNK_BYTES) {
      if (first) this.#readyBytes -= first.length;
      return first;
    }
    let size = first.length;
    let count = 1;
    let adjacent = true; // all lie back to back in one arena (see #keep)
    while (count - 1 < this.#ready.length) {
      const next = this.#ready[count - 1]!;
      if (size + next.length > READ_CHUNK_BYTES) break;
      adjacent &&= next.buffer === first.buffer && next.byteOffset === first.byteOffset + size;
      size += next.length;
      count++;
    }
    if (adjacent) {
      this.#ready.splice(0, count - 1);
      this.#readyBytes -= size;
      return new Uint8Array(first.buffer, first.byteOffset, size);
    }
    const joined = new Uint8Array(size);
    joined.set(first, 0);
    let offset = first.length;
    for (const part of this.#ready.splice(0, count - 1)) {
      joined.set(part, offset);
      offset += part.length;
    }
    this.#readyBytes -= size;
    return joined;
  }

  /** After the reader took data: advertise a reopened window promptly. */
  #afterRead(now: number): void {
    if (this.#state !== "open") return;
    const window = this.#window();
    if (
      (this.#lastAdvertised === 0 && window > 0) ||
      window - this.#lastAdvertised >= Math.max(2, this.#capacity >> 2)
    ) {
      this.#ackImmediate = true;
      this.#afterEvent(now);
    }
  }

  #write(chunk: Uint8Array): Promise<void> | void {
    if (this.#state === "closed") throw closeError(this.#closeInfo!);
    if (this.#finQueued) throw new TypeError("Cannot write after close");
    if (!(chunk instanceof Uint8Array)) throw new TypeError("Expected a Uint8Array chunk");
    if (chunk.length === 0) return;
    this.#sendQueue.push(chunk.slice());
    this.#sendQueueBytes += chunk.length;
    if (this.#state === "open") {
      const defer = this.#clock.defer;
      if (this.#bytesInFlight === 0 || !defer) {
        this.#afterEvent(this.#clock.now()); // idle: send at once (latency)
      } else if (!this.#flushDeferred) {
        // Busy: let the writes of this turn pile up and leave in full packets.
        this.#flushDeferred = true;
        defer.call(this.#clock, () => {
          this.#flushDeferred = false;
          if (!this.#isClosed()) this.#afterEvent(this.#clock.now());
        });
      }
    }
    if (this.#sendQueueBytes + this.#unackedBytes < this.#sendLimit) return;
    return new Promise((resolve, reject) => this.#writeWaiters.push({ resolve, reject }));
  }

  #wakeWriters(): void {
    if (this.#sendQueueBytes + this.#unackedBytes >= this.#sendLimit) return;
    for (const w of this.#writeWaiters.splice(0)) w.resolve();
  }

  #finish(): Promise<void> {
    if (this.#state === "closed") {
      if (this.#closeInfo?.reason === "closed") return Promise.resolve();
      return Promise.reject(closeError(this.#closeInfo!));
    }
    this.#queueFin(this.#clock.now());
    if (this.#finAcked) return Promise.resolve();
    return new Promise((resolve, reject) => this.#finWaiters.push({ resolve, reject }));
  }

  #queueFin(now: number): void {
    if (this.#finQueued) return;
    this.#finQueued = true;
    if (this.#state === "open") this.#afterEvent(now);
  }

  // ---------------------------------------------------------------- transmit path

  #synCount = 0;

  #sendSyn(now: number): void {
    this.#synCount++;
    this.#emitRaw({
      flags: FLAG.SYN,
      connectionId: this.id,
      seq: 0,
      ack: 0,
      handshake: { maxPayload: this.#maxPayload, window: this.#capacity, cookie: EMPTY },
      payload: EMPTY,
    }, now);
  }

  /** Flush everything the windows allow; then ACK if one is due. */
  #flush(now: number): void {
    if (this.#state !== "open") return;
    let sentSomething = false;
    const cwnd = this.#cc.congestionWindow();
    const rate = this.#cc.pacingRate();
    if (rate > 0) this.#pacer.setRate(rate, now);
    this.#pacingDeadline = Infinity;
    // Retransmissions first.
    while (this.#lostQueue.length > 0) {
      const seg = this.#segments.get(this.#lostQueue[0]!);
      if (!seg || seg.sacked || !seg.lost) {
        this.#lostQueue.shift();
        continue;
      }
      if (this.#bytesInFlight + seg.bytes > cwnd && this.#bytesInFlight > 0) break;
      if (!this.#paced(now, seg.bytes)) break;
      this.#lostQueue.shift();
      this.#transmit(seg, now, true);
      sentSomething = true;
    }
    // New data within the peer's window and the congestion window.
    while (this.#lostQueue.length === 0) {
      const wantsFin = this.#finQueued && this.#finSeq < 0 && this.#sendQueueBytes === 0;
      if (this.#sendQueueBytes === 0 && !wantsFin) break;
      if (this.#nextSeq >= this.#sndUna + this.#peerWindow) break;
      const size = Math.min(this.#maxPayload, this.#sendQueueBytes);
      if (this.#bytesInFlight + size + OVERHEAD > cwnd && this.#bytesInFlight > 0) break;
      if (!this.#paced(now, size + OVERHEAD)) break;
      if (this.#nextSeq >= MAX_SEQ) {
        this.#closeWith({
          reason: "protocol_error",
          message: "sequence space exhausted",
          remote: false,
        });
        return;
      }
      const payload = this.#take(size);
      const seg: Segment = {
        seq: this.#nextSeq++,
        packetNumber: 0,
        payload,
        fin: wantsFin,
        bytes: payload.length + OVERHEAD,
        sentAt: now,
        txCount: 0,
        txIndex: 0,
        probeOf: 0,
        sacked: false,
        lost: false,
        inFlight: false,
      };
      seg.packetNumber = seg.seq;
      if (wantsFin) this.#finSeq = seg.seq;
      this.#segments.set(seg.seq, seg);
      this.#unackedBytes += payload.length;
      this.#transmit(seg, now, false);
      sentSomething = true;
    }
    if (
      this.#sendQueueBytes === 0 && this.#lostQueue.length === 0 &&
      this.#bytesInFlight < cwnd
    ) {
      // Nothing left to send although the window has room: rate samples taken now say more
      // about the application than about the path.
      this.#cc.onAppLimited(now, this.#bytesInFlight);
    }
    if (sentSomething && this.#sendQueueBytes === 0 && this.#lostQueue.length === 0) {
      this.#hooks?.onIdle?.(now, this.#emitter);
    }
    // Zero window with data waiting and nothing in flight: probe after an RTO.
    const blocked = (this.#sendQueueBytes > 0 || (this.#finQueued && this.#finSeq < 0)) &&
      this.#nextSeq >= this.#sndUna + this.#peerWindow;
    if (blocked && !this.#hasOutstanding()) {
      if (this.#persistDeadline === Infinity) {
        this.#persistDeadline = now +
          Math.min(PERSIST_MAX_MS, this.#rtt.rto() * 2 ** this.#persistBackoff);
      }
    } else {
      this.#persistDeadline = Infinity;
    }
    if (this.#ackImmediate || (this.#ackDeadline <= now)) this.#sendControl(0, now);
    else if (this.#ackThisTurn) this.#ackAtTurnEnd(now);
  }

  /** Sends the pending ACK once this turn's packets (a received batch) are all processed. */
  #ackAtTurnEnd(now: number): void {
    const defer = this.#clock.defer;
    if (!defer) return this.#sendControl(0, now);
    if (this.#turnAckScheduled) return;
    this.#turnAckScheduled = true;
    defer.call(this.#clock, () => {
      this.#turnAckScheduled = false;
      if (this.#state !== "open" || !this.#ackThisTurn) return; // a data packet carried it
      const at = this.#clock.now();
      this.#sendControl(0, at);
      this.#armTimer(at);
    });
  }

  /** True when the pacer lets `bytes` go now; else arms the pacing deadline. */
  #paced(now: number, bytes: number): boolean {
    if (this.#pacer.canSend(now, bytes)) return true;
    // Wake at most once per PACING_MIN_WAKE_MS: the bucket (≥ 2 ms of rate) lets the packets
    // of that interval leave together, instead of one timer per packet.
    this.#pacingDeadline = Math.max(this.#pacer.nextSendTime(now, bytes), now + PACING_MIN_WAKE_MS);
    return false;
  }

  #take(size: number): Uint8Array {
    if (size === 0) return EMPTY;
    const first = this.#sendQueue[0]!;
    if (first.length === size) {
      this.#sendQueue.shift();
      this.#sendQueueBytes -= size;
      return first;
    }
    if (first.length > size) {
      this.#sendQueue[0] = first.subarray(size);
      this.#sendQueueBytes -= size;
      return first.subarray(0, size); // the queue holds our own copy (see #write): no 2nd copy
    }
    const out = new Uint8Array(size);
    let offset = 0;
    while (offset < size) {
      const chunk = this.#sendQueue[0]!;
      const n = Math.min(chunk.length, size - offset);
      out.set(chunk.subarray(0, n), offset);
      offset += n;
      if (n === chunk.length) this.#sendQueue.shift();
      else this.#sendQueue[0] = chunk.subarray(n);
    }
    this.#sendQueueBytes -= size;
    return out;
  }

  #transmit(seg: Segment, now: number, retransmission: boolean): void {
    seg.txCount++;
    seg.txIndex = ++this.#txCounter;
    seg.probeOf = 0;
    seg.sentAt = now;
    seg.lost = false;
    seg.inFlight = true;
    this.#bytesInFlight += seg.bytes;
    if (retransmission) this.#stats.retransmits++;
    this.#stats.bytesSent += seg.payload.length;
    let flags = FLAG.ACK;
    if (seg.fin) flags |= FLAG.FIN;
    const moreToSend = this.#sendQueueBytes > 0 || this.#lostQueue.length > 0;
    if (!moreToSend) flags |= FLAG.PSH;
    const packet = this.#packet(flags, seg.seq, seg.payload, now);
    const hooks = this.#hooks;
    // Hooks see the datagram; without them it is encoded straight into the socket's buffer.
    const datagram = hooks?.onSendData ? encodePacket(packet) : undefined;
    seg.packetNumber = seg.txIndex; // unique per transmission, increasing (like QUIC)
    this.#cc.onPacketSent(now, snapshot(seg), this.#bytesInFlight, retransmission);
    this.#pacer.onSent(now, seg.bytes);
    if (this.#rtoDeadline === Infinity) this.#rtoDeadline = now + this.#rtt.rto();
    this.#armTailLossProbe(now);
    if (datagram) hooks!.onSendData!(datagram, packet, this.#emitter, now);
    else this.#emitPacket(packet);
    this.#afterAckSent(now);
  }

  #emitter = (datagram: Uint8Array): void => {
    this.#noteSent();
    this.#host.send(datagram, this.#remoteAddr);
  };

  #noteSent(): void {
    this.#stats.packetsSent++;
    this.#lastSendTime = this.#clock.now();
  }

  #packet(flags: number, seq: number, payload: Uint8Array, now: number): Packet {
    const packet: Packet = {
      flags,
      connectionId: this.id,
      seq,
      ack: this.#rcvNext,
      ackInfo: {
        window: this.#window(),
        ackDelayMicros: this.#ackPending > 0 ? (now - this.#firstUnackedAt) * 1000 : 0,
        sack: this.#sackBlocks(),
      },
      payload,
    };
    if (this.role === "client" && !this.#confirmed) {
      packet.flags |= FLAG.URG;
      packet.handshake = {
        maxPayload: this.#maxPayload,
        window: this.#capacity,
        cookie: this.#cookie,
      };
    }
    return packet;
  }

  /** A packet without data: pure ACK (flags 0), ping (PSH) or RST. */
  #sendControl(extra: number, now: number): void {
    if (this.#state === "connecting") return;
    const flags = extra & FLAG.RST ? FLAG.RST | FLAG.ACK : FLAG.ACK | extra;
    const packet = this.#packet(flags, this.#nextSeq, EMPTY, now);
    if (!(flags & FLAG.RST)) this.#hooks?.onSendAck?.(packet, now);
    this.#emitRaw(packet, now);
    this.#afterAckSent(now);
  }

  #emitRaw(packet: Packet, _now: number): void {
    this.#emitPacket(packet);
  }

  #emitPacket(packet: Packet): void {
    if (!this.#host.sendPacket) return this.#emitter(encodePacket(packet));
    this.#noteSent();
    this.#host.sendPacket(packet, this.#remoteAddr);
  }

  #afterAckSent(_now: number): void {
    this.#ackPending = 0;
    this.#ackImmediate = false;
    this.#ackThisTurn = false;
    this.#ackDeadline = Infinity;
    this.#lastAdvertised = this.#window();
  }

  // ---------------------------------------------------------------- timers

  #afterEvent(now: number): void {
    if (this.#state === "closed") return;
    this.#flush(now);
    if (this.#isClosed()) return;
    this.#checkGracefulClose();
    if (this.#isClosed()) return;
    this.#armTimer(now);
  }

  #checkGracefulClose(): void {
    if (this.#finAcked && this.#peerFinSeq >= 0 && this.#rcvNext > this.#peerFinSeq) {
      this.#closeWith({ reason: "closed", message: "closed", remote: false });
    }
  }

  #nextDeadline(): number {
    if (this.#state === "connecting") {
      return Math.min(this.#handshakeDeadline, this.#lastSendTime + this.#rtt.rto());
    }
    let deadline = Math.min(
      this.#ackPending > 0 ? this.#ackDeadline : Infinity,
      this.#rtoDeadline,
      this.#lossDeadline,
      this.#tlpDeadline,
      this.#persistDeadline,
      this.#lastSendTime + this.#keepalive,
      this.#lastRecvTime + this.#idleTimeout,
      this.#closeDeadline,
    );
    if (this.#lostQueue.length > 0 || this.#sendQueueBytes > 0 || this.#finQueued) {
      deadline = Math.min(deadline, this.#pacingDeadline);
    }
    const hookDeadline = this.#hooks?.nextDeadline?.() ?? Infinity;
    return Math.min(deadline, hookDeadline);
  }

  #armTimer(now: number): void {
    const at = this.#nextDeadline();
    // A later deadline keeps the armed timer: firing early is harmless (#onTimer checks each
    // deadline and re-arms), while re-creating a timer on every ACK costs far more.
    if (this.#timer && at !== Infinity && at >= this.#timerAt) return;
    this.#timer?.cancel();
    this.#timer = null;
    this.#timerAt = at;
    if (at === Infinity) return;
    this.#timer = this.#clock.setTimer(Math.max(0, at - now), () => {
      this.#timer = null;
      this.#timerAt = Infinity;
      this.#onTimer();
    });
  }

  #onTimer(): void {
    if (this.#state === "closed") return;
    const now = this.#clock.now();
    if (this.#state === "connecting") {
      if (now >= this.#handshakeDeadline) {
        this.#closeWith({
          reason: "handshake_timeout",
          message: "no answer to SYN",
          remote: false,
        });
        return;
      }
      if (now >= this.#lastSendTime + this.#rtt.rto()) {
        this.#rtt.onTimeout();
        this.#sendSyn(now);
      }
      this.#armTimer(now);
      return;
    }
    if (now >= this.#lastRecvTime + this.#idleTimeout) {
      this.#closeWith({ reason: "idle_timeout", message: "idle timeout", remote: false });
      return;
    }
    if (now >= this.#closeDeadline) {
      this.#sendControl(FLAG.RST, now);
      this.#closeWith({
        reason: "close_timeout",
        message: "graceful close timed out",
        remote: false,
      });
      return;
    }
    if (now >= this.#lossDeadline) {
      const lost = this.#detectLosses(now);
      if (lost.length > 0) {
        this.#hooks?.onLossFeedback?.(0, lost.length, now);
        this.#cc.onAck({
          now,
          acked: [],
          lost,
          minRtt: this.#rtt.hasSample ? this.#rtt.minRtt : 0,
          priorBytesInFlight: this.#bytesInFlight + lost.reduce((n, p) => n + p.bytes, 0),
          bytesInFlight: this.#bytesInFlight,
        });
      }
    }
    if (now >= this.#rtoDeadline) this.#onRto(now);
    else if (now >= this.#tlpDeadline) this.#onTailLossProbe(now);
    if (now >= this.#persistDeadline) {
      this.#persistDeadline = Infinity;
      this.#persistBackoff = Math.min(this.#persistBackoff + 1, 6);
      this.#sendControl(FLAG.PSH, now);
    }
    if (this.#hooks?.onTimer && (this.#hooks.nextDeadline?.() ?? Infinity) <= now) {
      this.#hooks.onTimer(now, this.#emitter);
    }
    if (now >= this.#lastSendTime + this.#keepalive) this.#sendControl(FLAG.PSH, now);
    this.#afterEvent(now);
  }

  /** A probe 2·SRTT after the last send: retransmit the newest outstanding packet (RACK-TLP). */
  #armTailLossProbe(now: number): void {
    if (this.#tlpCount >= MAX_TLPS || !this.#rtt.hasSample) {
      this.#tlpDeadline = Infinity;
      return;
    }
    // A lone packet in flight gets a delayed ACK, up to maxAckDelay after it arrives (two or
    // more are ACKed at the end of the peer's receive turn): wait for it, as RFC 8985 §7.2
    // does, or a request/response exchange slower than the RTT probes every reply for nothing.
    const ackDelay = this.#nextSeq - this.#sndUna <= 1 ? this.#maxAckDelay : this.#maxAckDelay / 2;
    this.#tlpDeadline = now + Math.max(2 * this.#rtt.srtt, TLP_MIN_MS) + ackDelay;
  }

  #onTailLossProbe(now: number): void {
    this.#tlpDeadline = Infinity;
    if (this.#tlpCount >= MAX_TLPS) return;
    let newest: Segment | null = null;
    for (const seg of this.#segments.values()) {
      if (!seg.sacked && seg.inFlight && (!newest || seg.seq > newest.seq)) newest = seg;
    }
    if (!newest) return;
    this.#tlpCount++;
    this.#stats.tailLossProbes++;
    this.#sendProbe(newest, now);
  }

  /**
   * Resend a packet that is still in flight, without declaring it lost: its ACK (or SACK)
   * lets ACK-based loss detection repair whatever really was lost, and costs nothing when the
   * original arrives anyway.
   */
  #sendProbe(seg: Segment, now: number): void {
    const earlier = seg.probeOf || seg.txIndex;
    this.#bytesInFlight -= seg.bytes; // #transmit counts it again
    this.#transmit(seg, now, true);
    seg.probeOf = earlier;
  }

  /**
   * The retransmission timer expired: a probe timeout (RFC 9002 §6.2), not a loss signal.
   * Most expiries here are scheduling stalls longer than the RTO with nothing lost, so only
   * the oldest and the newest packet in flight are resent (the head and the tail of the
   * flight), the timer backs off and the congestion controller is left alone. The probes'
   * ACKs drive loss detection: nothing more if the flight arrived, fast retransmission of the
   * rest if it was lost, and the window collapse of persistent congestion after repeated
   * expiries (#onAck). A dead peer keeps expiring the backed-off timer until the idle timeout.
   */
  #onRto(now: number): void {
    this.#rtoDeadline = Infinity;
    this.#tlpDeadline = Infinity;
    if (!this.#hasOutstanding()) return;
    if (this.#onlyFinOutstanding() && ++this.#finRetries > FIN_RETRIES) {
      // Everything but our FIN is acknowledged and the peer finished too: the peer has most
      // likely closed (it only closes after seeing our FIN) and stopped answering.
      this.#closeWith({
        reason: "closed",
        message: "closed (the ACK of our FIN was not seen)",
        remote: false,
      });
      return;
    }
    this.#stats.rtoCount++;
    this.#rtt.onTimeout();
    let oldest: Segment | null = null;
    let newest: Segment | null = null;
    for (const seg of this.#segments.values()) {
      if (seg.sacked || !seg.inFlight) continue;
      if (!oldest || seg.seq < oldest.seq) oldest = seg;
      if (!newest || seg.seq > newest.seq) newest = seg;
    }
    // Packets already declared lost wait in #lostQueue and go out with the next flush.
    if (oldest) this.#sendProbe(oldest, now);
    if (newest && newest !== oldest) this.#sendProbe(newest, now);
    this.#rtoDeadline = now + this.#rtt.rto();
  }

  // ---------------------------------------------------------------- close

  #startHooks(now: number): void {
    if (this.#hooksFactory && !this.#hooks) {
      this.#hooks = this.#hooksFactory({
        connectionId: this.id,
        maxPayload: this.#maxPayload,
        now,
      });
    }
  }

  #closeWith(info: CloseInfo): void {
    if (this.#state === "closed") return;
    const wasOpen = this.#state === "open";
    this.#state = "closed";
    this.#closeInfo = info;
    this.#timer?.cancel();
    this.#timer = null;
    this.#timerAt = Infinity;
    this.#hooks?.onClose?.();
    const error = closeError(info);
    if (info.reason !== "closed") {
      this.#ready = [];
      this.#readyBytes = 0;
    }
    for (const w of this.#writeWaiters.splice(0)) w.reject(error);
    for (const w of this.#finWaiters.splice(0)) {
      if (info.reason === "closed") w.resolve();
      else w.reject(error);
    }
    const onOpen = this.#onOpen;
    this.#onOpen = null;
    onOpen?.(error);
    this.#feedReader();
    this.#segments.clear();
    this.#outOfOrder.clear();
    this.#sendQueue = [];
    const graceful = info.reason === "closed" && wasOpen;
    const final = encodePacket({
      flags: graceful ? FLAG.ACK : FLAG.RST | FLAG.ACK,
      connectionId: this.id,
      seq: this.#nextSeq,
      ack: this.#rcvNext,
      ackInfo: { window: 0, ackDelayMicros: 0, sack: [] },
      payload: EMPTY,
    });
    if (graceful) this.#emitter(final); // the last ACK goes out twice: it is never retransmitted
    this.#released = this.#host.onClosed(
      this,
      { packet: final, graceful },
      Math.min(1000, 3 * this.#rtt.rto()),
    );
    this.#resolveClosed(info);
  }
}

/** The error streams reject with after an abnormal close. */
export function closeError(info: CloseInfo): AppError {
  const status = info.reason === "aborted" || info.reason === "reset" ? "ABORTED" : "UNAVAILABLE";
  return new AppError(status, `Connection ${info.reason}: ${info.message}`, { details: info });
}

function snapshot(seg: Segment): SentPacket {
  return {
    packetNumber: seg.packetNumber,
    bytes: seg.bytes,
    sentAt: seg.sentAt,
    retransmitted: seg.txCount > 1,
  };
}

function sameAddr(a: Deno.NetAddr, b: Deno.NetAddr): boolean {
  return a.port === b.port && a.hostname === b.hostname;
}
