/**
 * Power-of-two-choices load balancing with EWMA latency, as go-zero's
 * `zrpc/internal/balancer/p2c` does it (REFERENCES.md):
 *
 * - per node, `lag = lag·w + latency·(1 − w)` and `success = success·w + (ok ? 1000 : 0)·(1 − w)`
 *   with `w = exp(−Δt / 10 s)` (Δt = time since the node's previous completion; the first
 *   sample is taken as is);
 * - `load = √(lag + 1) · (inflight + 1)` (lag in ms here);
 * - a node is healthy while its success EWMA is above 500;
 * - pick two distinct random nodes (up to three tries to find two healthy ones); the lower
 *   load wins, unless the other one has not been picked for more than 1 s (it is then
 *   picked, so a recovered node gets probed).
 *
 * The clock and the random source are injected, so tests are deterministic.
 *
 * @example
 * ```ts
 * const balancer = new P2cBalancer<string>();
 * balancer.update([{ id: "a", value: "10.0.0.1:50051" }, { id: "b", value: "10.0.0.2:50051" }]);
 * const picked = balancer.pick()!;
 * try {
 *   await call(picked.value);
 *   picked.done();
 * } catch (error) {
 *   picked.done(error);
 * }
 * ```
 * @module
 */
import { AppError } from "../kernel/mod.ts";

/** EWMA decay time constant (ms). */
export const DECAY_MS = 10_000;
/** A node not picked for longer than this is picked when it comes up as the loser (ms). */
export const FORCE_PICK_MS = 1000;
const INIT_SUCCESS = 1000;
const THROTTLE_SUCCESS = INIT_SUCCESS / 2;
const PICK_TIMES = 3;

/** gRPC codes (and their names) that count as a failed call for the success EWMA. */
const FAILURE_CODES = new Set<number | string>([
  4,
  12,
  13,
  14,
  15,
  "DEADLINE_EXCEEDED",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
]);

/**
 * Whether an error means the node failed (go-zero's `codes.Acceptable` reversed):
 * DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS, or a non-gRPC error.
 */
export function isNodeFailure(error: unknown): boolean {
  if (error instanceof AppError) return FAILURE_CODES.has(error.status);
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "number" ? FAILURE_CODES.has(code) : true;
}

/** Options for {@link P2cBalancer}. */
export interface P2cOptions {
  /** Monotonic ms clock (default `performance.now()`). */
  clock?: { now(): number };
  /** Uniform random in [0, 1) (default `Math.random`). */
  random?: () => number;
  /** Classifies a call error as a node failure (default {@link isNodeFailure}). */
  isFailure?: (error: unknown) => boolean;
}

/** Live statistics of one node. */
export interface NodeStats {
  id: string;
  /** Latency EWMA, ms. */
  lag: number;
  /** Success EWMA, 0..1000. */
  success: number;
  inflight: number;
  requests: number;
  /** {@link P2cBalancer} load figure. */
  load: number;
  healthy: boolean;
}

/** A pick: call `done` exactly once when the call ends (with the error, if any). */
export interface Picked<T> {
  id: string;
  value: T;
  done(error?: unknown): void;
}

interface Node<T> {
  id: string;
  value: T;
  lag: number;
  success: number;
  inflight: number;
  requests: number;
  /** When it was last chosen. */
  pick: number;
  /** When a call on it last completed. */
  last: number;
}

/** P2C + EWMA over a changing set of nodes. */
export class P2cBalancer<T> {
  #clock: { now(): number };
  #random: () => number;
  #isFailure: (error: unknown) => boolean;
  #nodes: Node<T>[] = [];

  constructor(options: P2cOptions = {}) {
    this.#clock = options.clock ?? performance;
    this.#random = options.random ?? Math.random;
    this.#isFailure = options.isFailure ?? isNodeFailure;
  }

  /** Replace the node set; nodes that stay (same id) keep their statistics. */
  update(nodes: readonly { id: string; value: T }[]): void {
    const old = new Map(this.#nodes.map((node) => [node.id, node]));
    const now = this.#clock.now();
    this.#nodes = nodes.map(({ id, value }) => {
      const existing = old.get(id);
      if (existing !== undefined) {
        existing.value = value;
        return existing;
      }
      return {
        id,
        value,
        lag: 0,
        success: INIT_SUCCESS,
        inflight: 0,
        requests: 0,
        pick: now,
        last: now,
      };
    });
  }

  /** Number of nodes. */
  get size(): number {
    return this.#nodes.length;
  }

  /**
   * Choose a node for one call, or undefined when there is none (or none outside `exclude`,
   * e.g. the nodes a retried call already failed on).
   */
  pick(exclude?: ReadonlySet<string>): Picked<T> | undefined {
    const nodes = exclude === undefined || exclude.size === 0
      ? this.#nodes
      : this.#nodes.filter((node) => !exclude.has(node.id));
    let chosen: Node<T>;
    switch (nodes.length) {
      case 0:
        return undefined;
      case 1:
        chosen = this.#choose(nodes[0]!, undefined);
        break;
      case 2:
        chosen = this.#choose(nodes[0]!, nodes[1]!);
        break;
      default: {
        let a = nodes[0]!;
        let b = nodes[1]!;
        for (let i = 0; i < PICK_TIMES; i++) {
          const x = Math.floor(this.#random() * nodes.length);
          let y = Math.floor(this.#random() * (nodes.length - 1));
          if (y >= x) y++;
          a = nodes[x]!;
          b = nodes[y]!;
          if (healthy(a) && healthy(b)) break;
        }
        chosen = this.#choose(a, b);
      }
    }
    chosen.inflight++;
    chosen.requests++;
    const start = this.#clock.now();
    let finished = false;
    return {
      id: chosen.id,
      value: chosen.value,
      done: (error?: unknown) => {
        if (finished) return;
        finished = true;
        this.#complete(chosen, start, error !== undefined && this.#isFailure(error));
      },
    };
  }

  /** Statistics of every node. */
  stats(): NodeStats[] {
    return this.#nodes.map((node) => ({
      id: node.id,
      lag: node.lag,
      success: node.success,
      inflight: node.inflight,
      requests: node.requests,
      load: load(node),
      healthy: healthy(node),
    }));
  }

  #choose(c1: Node<T>, c2: Node<T> | undefined): Node<T> {
    const now = this.#clock.now();
    if (c2 === undefined) {
      c1.pick = now;
      return c1;
    }
    if (load(c1) > load(c2)) [c1, c2] = [c2, c1];
    if (now - c2.pick > FORCE_PICK_MS) {
      c2.pick = now;
      return c2;
    }
    c1.pick = now;
    return c1;
  }

  #complete(node: Node<T>, start: number, failed: boolean): void {
    node.inflight--;
    const now = this.#clock.now();
    const td = Math.max(0, now - node.last);
    node.last = now;
    let w = Math.exp(-td / DECAY_MS);
    const lag = Math.max(0, now - start);
    if (node.lag === 0) w = 0;
    node.lag = node.lag * w + lag * (1 - w);
    const success = failed ? 0 : INIT_SUCCESS;
    node.success = node.success * w + success * (1 - w);
  }
}

function healthy(node: Node<unknown>): boolean {
  return node.success > THROTTLE_SUCCESS;
}

function load(node: Node<unknown>): number {
  return Math.sqrt(node.lag + 1) * (node.inflight + 1);
}

/** Options for {@link balancedCall}. */
export interface BalancedCallOptions {
  /** Whether the call may run again on another node after a node failure. */
  idempotent: boolean;
  /** Most extra attempts for idempotent calls (default 2). */
  retries?: number;
}

/**
 * Run `call` on a picked node; when it fails with a node failure and the call is
 * idempotent, run it again on a node it has not failed on yet.
 * @throws {AppError} UNAVAILABLE when there is no node; otherwise the call's last error
 */
export async function balancedCall<T, R>(
  balancer: P2cBalancer<T>,
  call: (node: T) => Promise<R>,
  options: BalancedCallOptions,
): Promise<R> {
  const failed = new Set<string>();
  const attempts = options.idempotent ? 1 + (options.retries ?? 2) : 1;
  let lastError: unknown = new AppError("UNAVAILABLE", "No instance available");
  for (let attempt = 0; attempt < attempts; attempt++) {
    const picked = balancer.pick(failed);
    if (picked === undefined) break;
    try {
      const result = await call(picked.value);
      picked.done();
      return result;
    } catch (error) {
      picked.done(error);
      lastError = error;
      if (!isNodeFailure(error)) break;
      failed.add(picked.id);
    }
  }
  throw lastError;
}
