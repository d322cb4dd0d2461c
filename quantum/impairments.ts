/**
 * Seeded network impairments (loss, delay, jitter/reorder, duplication, corruption, bandwidth
 * cap with a bounded queue), shared by the simulated network and the real-socket relay.
 *
 * @example
 * ```ts
 * const impairer = new Impairer({ loss: 0.05, delayMs: 5, jitterMs: 2, seed: 1 });
 * for (const { delayMs, data } of impairer.process(datagram, clock.now())) {
 *   clock.setTimer(delayMs, () => deliver(data));
 * }
 * ```
 * @module
 */
import { Random } from "./_random.ts";

/** What to do to datagrams crossing a link. All fields optional; defaults are a clean link. */
export interface Impairments {
  /** Probability a datagram is dropped (0..1). */
  loss?: number;
  /** One-way delay in ms. */
  delayMs?: number;
  /** Extra uniform random delay in [0, jitterMs) ms per datagram; reorders datagrams. */
  jitterMs?: number;
  /** Probability a datagram is delivered twice (0..1). */
  duplicate?: number;
  /** Probability one random byte of a datagram is flipped (0..1). */
  corrupt?: number;
  /** Link rate in bytes per second (default unlimited). */
  bandwidthBytesPerSec?: number;
  /** Bytes that may queue for the link before tail drop (default 256 KiB). */
  queueBytes?: number;
  /** PRNG seed (default 1). */
  seed?: number;
}

/** Counters of an {@linkcode Impairer}. */
export interface ImpairmentStats {
  /** Datagrams offered. */
  offered: number;
  /** Copies scheduled for delivery (includes duplicates). */
  delivered: number;
  /** Dropped by random loss. */
  lost: number;
  /** Dropped because the bandwidth queue was full. */
  queueDrops: number;
  /** Extra copies made. */
  duplicated: number;
  /** Datagrams with a flipped byte. */
  corrupted: number;
}

/** One copy to deliver after `delayMs`. */
export interface Delivery {
  /** Delay from now in ms. */
  delayMs: number;
  /** Bytes to deliver (a private copy). */
  data: Uint8Array;
}

/** Applies {@linkcode Impairments} to a stream of datagrams, deterministically for a seed. */
export class Impairer {
  #config: Required<Impairments>;
  #random: Random;
  #linkFreeAt = 0;
  /** Counters so far. */
  readonly stats: ImpairmentStats = {
    offered: 0,
    delivered: 0,
    lost: 0,
    queueDrops: 0,
    duplicated: 0,
    corrupted: 0,
  };

  /** An impairer seeded with `impairments.seed` (default 1). @throws {RangeError} on bad settings */
  constructor(impairments: Impairments = {}) {
    this.#config = normalise(impairments);
    this.#random = new Random(this.#config.seed);
  }

  /** Current settings. */
  get impairments(): Readonly<Required<Impairments>> {
    return this.#config;
  }

  /** Change settings (the PRNG keeps its state unless a new seed is given). */
  update(impairments: Impairments): void {
    this.#config = normalise({ ...this.#config, ...impairments });
    if (impairments.seed !== undefined) this.#random = new Random(impairments.seed);
  }

  /** Decide the fate of one datagram sent at `now` (ms). Copies `data`. */
  process(data: Uint8Array, now: number): Delivery[] {
    const c = this.#config;
    const r = this.#random;
    this.stats.offered++;
    let queueDelay = 0;
    if (Number.isFinite(c.bandwidthBytesPerSec)) {
      const start = Math.max(now, this.#linkFreeAt);
      if ((start - now) * c.bandwidthBytesPerSec / 1000 > c.queueBytes) {
        this.stats.queueDrops++;
        return [];
      }
      this.#linkFreeAt = start + (data.length * 1000) / c.bandwidthBytesPerSec;
      queueDelay = this.#linkFreeAt - now;
    }
    if (c.loss > 0 && r.next() < c.loss) {
      this.stats.lost++;
      return [];
    }
    const copies = c.duplicate > 0 && r.next() < c.duplicate ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    const out: Delivery[] = [];
    for (let i = 0; i < copies; i++) {
      const copy = data.slice();
      if (c.corrupt > 0 && r.next() < c.corrupt && copy.length > 0) {
        copy[r.int(copy.length)]! ^= 1 << r.int(8);
        this.stats.corrupted++;
      }
      const jitter = c.jitterMs > 0 ? r.next() * c.jitterMs : 0;
      out.push({ delayMs: queueDelay + c.delayMs + jitter, data: copy });
    }
    this.stats.delivered += out.length;
    return out;
  }
}

function normalise(i: Impairments): Required<Impairments> {
  const probability = (value: number | undefined, field: string) => {
    const v = value ?? 0;
    if (!(v >= 0 && v <= 1)) throw new RangeError(`Invalid ${field}: expected 0..1`);
    return v;
  };
  const nonNegative = (value: number | undefined, fallback: number, field: string) => {
    const v = value ?? fallback;
    if (!(v >= 0)) throw new RangeError(`Invalid ${field}: expected a non-negative number`);
    return v;
  };
  const bandwidth = i.bandwidthBytesPerSec ?? Infinity;
  if (!(bandwidth > 0)) throw new RangeError("Invalid bandwidthBytesPerSec: expected > 0");
  return {
    loss: probability(i.loss, "loss"),
    duplicate: probability(i.duplicate, "duplicate"),
    corrupt: probability(i.corrupt, "corrupt"),
    delayMs: nonNegative(i.delayMs, 0, "delayMs"),
    jitterMs: nonNegative(i.jitterMs, 0, "jitterMs"),
    bandwidthBytesPerSec: bandwidth,
    queueBytes: nonNegative(i.queueBytes, 256 * 1024, "queueBytes"),
    seed: i.seed ?? 1,
  };
}
