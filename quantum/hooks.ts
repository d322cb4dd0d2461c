/**
 * Per-connection datagram hooks: the seam where FEC (and any other datagram-level stage) plugs
 * into a connection's transmit path and receive dispatch.
 *
 * @example
 * ```ts
 * const hooks: DatagramHooksFactory = () => ({
 *   onSendData(datagram, _packet, emit) { emit(datagram); }, // pass-through
 * });
 * const conn = await dial({ hostname: "127.0.0.1", port: 9000, datagramHooks: hooks });
 * ```
 * @module
 */
import type { Packet } from "./wire.ts";
import type { FecHookStats } from "./fec_hooks.ts";

/** Sends one datagram to the connection's current peer address. */
export type Emit = (datagram: Uint8Array) => void;

/** Hooks one connection calls; every member is optional. */
export interface DatagramHooks {
  /**
   * Sees every outgoing data datagram (a packet carrying payload or FIN, first transmission or
   * retransmission) and must `emit` what goes on the wire: the datagram itself (possibly
   * re-encoded, e.g. with the FEC flag and extension) and any extra datagrams (parity).
   * Without this hook the datagram is emitted unchanged.
   */
  onSendData?(datagram: Uint8Array, packet: Packet, emit: Emit, now: number): void;
  /**
   * Sees every incoming datagram with the FEC flag, after decoding. Returns datagrams it
   * recovered (complete encoded packets) to feed into the receive path; they never produce
   * RTT samples. A data shard (index < dataShards) is also processed normally after the hook;
   * a parity shard is only given to the hook. Without this hook parity is dropped and counted.
   */
  onReceiveFec?(packet: Packet, datagram: Uint8Array, now: number): Uint8Array[] | void;
  /** Next time (ms) the hook wants {@linkcode DatagramHooks.onTimer} (Infinity for none). */
  nextDeadline?(): number;
  /** Called at or after `nextDeadline()`, e.g. to flush a partly filled FEC group. */
  onTimer?(now: number, emit: Emit): void;
  /**
   * The connection sent its last queued data packet (nothing more is waiting): e.g. close the
   * open FEC group at once so sparse messages are protected without waiting for a timer.
   */
  onIdle?(now: number, emit: Emit): void;
  /**
   * Sees every outgoing pure ACK (no data, not RST) before it is encoded; may add the FEC flag
   * and an FEC extension with `dataShards` 0 (a loss report, PROTOCOL.md).
   */
  onSendAck?(packet: Packet, now: number): void;
  /** Sender-side loss detection: packets newly acknowledged and newly declared lost. */
  onLossFeedback?(acked: number, lost: number, now: number): void;
  /**
   * How long loss detection must wait before declaring a packet lost, beyond its usual 3
   * packets / 9/8·RTT: with FEC, until the group's parity can have repaired it.
   */
  reorderTolerance?(): { packets: number; ms: number } | undefined;
  /** Counters for `stats().fec`. */
  stats?(): FecHookStats;
  /** The connection closed. */
  onClose?(): void;
}

/** Creates hooks for a new connection. */
export type DatagramHooksFactory = (
  info: { connectionId: string; maxPayload: number; now: number },
) => DatagramHooks;
