/**
 * Client-side operational transformation, as ShareDB's client does it: local ops apply
 * optimistically, ONE op is in flight at a time, later local ops wait (composed) behind it,
 * and every remote op is transformed against the in-flight and pending ops so the local
 * view never jumps and converges with the server. Pure state: no sockets, no timers.
 *
 * Sides follow the server: under the `merge` strategy the op the server applied first wins
 * ties (our not-yet-applied ops are the "right" side); under `lww` the later op wins, so ours
 * are the "left" side.
 *
 * @example
 * ```ts
 * import { OtState } from "./ot_state.ts";
 * const state = new OtState({ version: 0, content: { text: "" } });
 * state.submit([{ path: ["text"], action: { type: "text_insert", offset: 0, text: "hi" } }]);
 * const send = state.takeSendable(); // { op, clientOpId, baseVersion: 0 }
 * ```
 * @module
 */
import { apply, type Json, type Op, transform } from "../../statesync/json0/mod.ts";

/** An op on its way to the server. */
export interface InflightOp {
  /** The op in the coordinates of {@linkcode OtState.version}. */
  op: Op;
  /** Id the server de-duplicates resends by (same id on every resend). */
  clientOpId: string;
  /** Version the op was (last) sent against. */
  baseVersion: number;
}

/** What an incoming applied operation meant for the local state. */
export type Received =
  /** Already incorporated (replay overlap or an ack got there first). */
  | { kind: "stale" }
  /** A version is missing before this one: resubscribe from {@linkcode OtState.version}. */
  | { kind: "gap" }
  /** Our in-flight op, applied by the server at this version. */
  | { kind: "ack"; version: number }
  /** Someone else's op, transformed into our local coordinates and applied. */
  | { kind: "remote"; version: number; op: Op };

/** Options for {@linkcode OtState}. */
export interface OtStateOptions {
  version: number;
  content: Json;
  /** Document conflict strategy: "lww" makes our ops win ties (default "merge"). */
  strategy?: string;
  /** Most components per sent op; the rest stays pending (default 500). */
  maxComponents?: number;
  /**
   * Approximate most bytes of components per sent op (default 32 KiB; the gateway closes
   * the socket on messages over 64 KiB). Long text inserts are split into consecutive
   * inserts to fit; a single other component larger than this is sent alone.
   */
  maxBytes?: number;
  /** Client op id generator (default crypto.randomUUID). */
  newId?: () => string;
}

/** The OT state of one document on one client. */
export class OtState {
  #version: number;
  #content: Json;
  #inflight: InflightOp | null = null;
  #pending: Op = [];
  #mineWins: boolean;
  #maxComponents: number;
  #maxBytes: number;
  #newId: () => string;

  constructor(options: OtStateOptions) {
    this.#version = options.version;
    this.#content = options.content;
    this.#mineWins = options.strategy === "lww";
    this.#maxComponents = options.maxComponents ?? 500;
    this.#maxBytes = options.maxBytes ?? 32_768;
    this.#newId = options.newId ?? (() => crypto.randomUUID());
  }

  /** Last server version incorporated. */
  get version(): number {
    return this.#version;
  }

  /** The local view: server state plus our unacknowledged ops. */
  get content(): Json {
    return this.#content;
  }

  /** The op awaiting its ack, if any. */
  get inflight(): Readonly<InflightOp> | null {
    return this.#inflight;
  }

  /** Local components not yet sent. */
  get pending(): Readonly<Op> {
    return this.#pending;
  }

  /** Our not yet acknowledged edits, in order (in flight, then pending), in local coordinates. */
  get unacknowledgedOp(): Op {
    return [...(this.#inflight?.op ?? []), ...this.#pending];
  }

  /** Components not yet acknowledged (in flight + pending). */
  get unacknowledged(): number {
    return (this.#inflight?.op.length ?? 0) + this.#pending.length;
  }

  /**
   * Apply a local op optimistically and queue it.
   * @throws {OpError} when the op does not apply to the local content (state unchanged)
   */
  submit(op: Op): void {
    if (op.length === 0) return;
    this.#content = apply(this.#content, op);
    for (const component of op) appendCompressed(this.#pending, component);
  }

  /**
   * If nothing is in flight and something is pending: move the head of the pending op (at
   * most maxComponents components and about maxBytes) into flight, against the current
   * version, and return it for sending.
   */
  takeSendable(): Readonly<InflightOp> | null {
    if (this.#inflight !== null || this.#pending.length === 0) return null;
    const op: Op = [];
    let bytes = 0;
    let index = 0;
    const rest: Op = [];
    for (; index < this.#pending.length && op.length < this.#maxComponents; index++) {
      const component = this.#pending[index]!;
      const size = byteSize(component);
      if (bytes + size <= this.#maxBytes || op.length === 0 && size <= this.#maxBytes) {
        op.push(component);
        bytes += size;
        continue;
      }
      const [head, tail] = splitInsert(component, this.#maxBytes - bytes);
      if (head !== undefined) op.push(head);
      if (tail !== undefined) rest.push(tail);
      if (head === undefined && op.length === 0) {
        op.push(component); // cannot be split: send it alone and let the server judge
        rest.pop();
      }
      index++;
      break;
    }
    this.#pending = [...rest, ...this.#pending.slice(index)];
    this.#inflight = { op, clientOpId: this.#newId(), baseVersion: this.#version };
    return this.#inflight;
  }

  /**
   * The in-flight op to send again after a reconnect (same client op id, so the server
   * de-duplicates it), rebased on the current version.
   */
  resendable(): Readonly<InflightOp> | null {
    if (this.#inflight === null) return null;
    this.#inflight.baseVersion = this.#version;
    return this.#inflight;
  }

  /**
   * Incorporate an operation the server applied at `version`, in server order.
   * `clientOpId` identifies our own in-flight op coming back.
   * @throws {OpError} if the transformed op does not apply (a bug or a corrupt stream)
   */
  receive(version: number, op: Op, clientOpId: string | undefined): Received {
    if (version <= this.#version) return { kind: "stale" };
    if (version > this.#version + 1) return { kind: "gap" };
    if (
      this.#inflight !== null && clientOpId !== undefined && clientOpId !== "" &&
      clientOpId === this.#inflight.clientOpId
    ) {
      this.#version = version;
      this.#inflight = null;
      return { kind: "ack", version };
    }
    let remote = op;
    if (this.#inflight !== null) {
      const mine = this.#inflight.op;
      this.#inflight.op = this.#transformMine(mine, remote);
      remote = this.#transformTheirs(remote, mine);
    }
    if (this.#pending.length > 0) {
      const mine = this.#pending;
      this.#pending = this.#transformMine(mine, remote);
      remote = this.#transformTheirs(remote, mine);
    }
    this.#content = apply(this.#content, remote);
    this.#version = version;
    return { kind: "remote", version, op: remote };
  }

  /**
   * An ack for `clientOpId` at `version`: completes the in-flight op when no other op came
   * between (otherwise the ops before it are still on their way and the op's own
   * operation_applied event completes it). Returns true when the ack was taken.
   */
  ack(version: number, clientOpId: string): boolean {
    if (this.#inflight?.clientOpId !== clientOpId || version !== this.#version + 1) return false;
    this.#version = version;
    this.#inflight = null;
    return true;
  }

  /**
   * Start over from a server snapshot (after a rejected op or a resync); returns the local
   * ops that were dropped.
   */
  reset(version: number, content: Json, strategy?: string): Op {
    const dropped = [...(this.#inflight?.op ?? []), ...this.#pending];
    this.#version = version;
    this.#content = content;
    this.#inflight = null;
    this.#pending = [];
    if (strategy !== undefined) this.#mineWins = strategy === "lww";
    return dropped;
  }

  #transformMine(mine: Op, theirs: Op): Op {
    return transform(mine, theirs, this.#mineWins ? "left" : "right");
  }

  #transformTheirs(theirs: Op, mine: Op): Op {
    return transform(theirs, mine, this.#mineWins ? "right" : "left");
  }
}

/**
 * Append a component, merging typing runs (insert right after the previous insert,
 * backspace/delete next to the previous delete) so offline typing stays small.
 */
function appendCompressed(op: Op, next: Op[number]): void {
  const last = op[op.length - 1];
  if (last !== undefined && samePath(last.path, next.path)) {
    const a = last.action;
    const b = next.action;
    if (a.type === "text_insert" && b.type === "text_insert") {
      if (b.offset >= a.offset && b.offset <= a.offset + a.text.length) {
        const at = b.offset - a.offset;
        const text = a.text.slice(0, at) + b.text + a.text.slice(at);
        op[op.length - 1] = { path: last.path, action: { ...a, text } };
        return;
      }
    }
    if (a.type === "text_delete" && b.type === "text_delete") {
      if (b.offset === a.offset) {
        op[op.length - 1] = { path: last.path, action: { ...a, length: a.length + b.length } };
        return;
      }
      if (b.offset + b.length === a.offset) {
        op[op.length - 1] = {
          path: last.path,
          action: { type: "text_delete", offset: b.offset, length: a.length + b.length },
        };
        return;
      }
    }
  }
  op.push(next);
}

const encoder = new TextEncoder();

/** Approximate JSON size of a component on the wire. */
function byteSize(component: Op[number]): number {
  return encoder.encode(JSON.stringify(component)).length + 16;
}

/**
 * Split a text insert so its first part takes about `budget` bytes; other components (or a
 * budget too small for any text) give `[undefined, component]`.
 */
function splitInsert(component: Op[number], budget: number): [Op[number]?, Op[number]?] {
  const action = component.action;
  const overhead = byteSize({ ...component, action: { ...action, text: "" } as typeof action });
  if (action.type !== "text_insert" || budget - overhead < 64) return [undefined, component];
  // UTF-16 units cost up to 3 bytes in UTF-8 (a pair costs 4 for 2 units); JSON escapes
  // of control characters cost up to 6, so be conservative.
  let cut = Math.max(1, Math.floor((budget - overhead) / 6));
  const code = action.text.charCodeAt(cut - 1);
  if (code >= 0xd800 && code <= 0xdbff) cut--; // keep surrogate pairs together
  if (cut <= 0 || cut >= action.text.length) return [component, undefined];
  return [
    { path: component.path, action: { ...action, text: action.text.slice(0, cut) } },
    {
      path: component.path,
      action: { ...action, offset: action.offset + cut, text: action.text.slice(cut) },
    },
  ];
}

function samePath(a: readonly (string | number)[], b: readonly (string | number)[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
