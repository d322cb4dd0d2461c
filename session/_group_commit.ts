/**
 * Group commit for Deno KV: writes queued while one commit is in flight are merged into a
 * single `kv.atomic()`, which costs about as much as one write (REFERENCES.md: sequential
 * sets ~1.8k/s, batches of 100 ~40k keys/s). Each queued write keeps its own checks, so
 * optimistic concurrency is unchanged: if a merged batch fails, its writes are retried one by
 * one and each caller learns whether *its* checks held.
 *
 * Writes that touch a key already in the batch, held back, or in a batch still in flight wait
 * for a later batch, so per-key order is preserved and no write silently overwrites another in
 * the same batch. Two batches may be in flight at once (KV runs them one after the other on its
 * own thread): while one commits, the callers answered by the other build their next writes.
 * @module
 */

import { setImmediate } from "node:timers";

/** One atomic write: checks that must hold and mutations to apply. */
export interface KvWrite {
  /** Versionstamp checks. */
  checks: Deno.AtomicCheck[];
  /** Sets and deletes. */
  mutations: Deno.KvMutation[];
  /** Rough size in bytes of the values written (keeps batches under KV's limits). */
  bytes: number;
}

interface Pending {
  write: KvWrite;
  keys: string[];
  resolve: (versionstamp: string | null) => void;
  reject: (error: unknown) => void;
}

// Deno KV limits per atomic operation: 100 checks, 1000 mutations, 800 KiB of mutations.
const MAX_CHECKS = 100;
const MAX_MUTATIONS = 1000;
const MAX_BYTES = 400 * 1024;
const MAX_WRITES = 64;
/** Batches in KV at once: one committing, one ready behind it. */
const MAX_IN_FLIGHT = 2;

/** Merges concurrent KV writes into shared atomic commits, with up to two commits in flight. */
export class GroupCommitter {
  #kv: Deno.Kv;
  #queue: Pending[] = [];
  /** Batches handed to KV and not yet answered. */
  #inFlight = new Set<Promise<void>>();
  /** Keys of the in-flight batches: a write touching one waits for that batch to finish. */
  #busyKeys = new Set<string>();
  #scheduled = false;
  #enabled: boolean;
  #commits = 0;
  #writes = 0;

  /** `enabled: false` commits every write on its own (for comparison in benchmarks). */
  constructor(kv: Deno.Kv, options: { enabled?: boolean } = {}) {
    this.#kv = kv;
    this.#enabled = options.enabled ?? true;
  }

  /** Atomic commits issued and writes they carried (writes / commits = mean batch size). */
  stats(): { commits: number; writes: number } {
    return { commits: this.#commits, writes: this.#writes };
  }

  /**
   * Commit `write`; resolves with the versionstamp of the commit that carried it (every key it
   * set now has that versionstamp), or null when one of its checks failed.
   */
  commit(write: KvWrite): Promise<string | null> {
    if (!this.#enabled) {
      this.#commits++;
      this.#writes++;
      return commitOne(this.#kv, write);
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ write, keys: keysOf(write), resolve, reject });
      this.#schedule();
    });
  }

  /** Wait until every queued write is committed. */
  async drain(): Promise<void> {
    while (this.#queue.length > 0 || this.#inFlight.size > 0) {
      if (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
      else await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /**
   * Launch batches on the next setImmediate, so callers that are ready (e.g. just answered by
   * the last commit) queue first: otherwise the next batch takes whoever was quickest and the
   * rest trail in tiny batches. setImmediate costs ~20 µs here; a setTimeout(0) in Deno waits a
   * millisecond or more.
   */
  #schedule(): void {
    if (this.#scheduled || this.#inFlight.size >= MAX_IN_FLIGHT) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#launch();
    });
  }

  /**
   * Hand batches to KV until both slots are taken. KV commits one at a time on its own thread;
   * a second batch in flight lets the JS side prepare (serialise, answer callers, build the
   * next writes) while KV works, instead of KV idling between commits. When both slots are
   * free the queue is split in two so the callers fall into two alternating groups.
   */
  #launch(): void {
    while (this.#inFlight.size < MAX_IN_FLIGHT && this.#queue.length > 0) {
      const limit = this.#inFlight.size === 0
        ? Math.ceil(this.#queue.length / MAX_IN_FLIGHT)
        : MAX_WRITES;
      const batch = this.#take(Math.min(limit, MAX_WRITES));
      if (batch.length === 0) return; // all wait for keys in flight; a finishing batch relaunches
      const keys = batch.flatMap((pending) => pending.keys);
      for (const key of keys) this.#busyKeys.add(key);
      const done: Promise<void> = this.#commitBatch(batch).catch((error) => {
        // e.g. a key KV refuses while building the batch: every caller learns (a no-op for
        // those already answered)
        for (const pending of batch) pending.reject(error);
      }).finally(() => {
        for (const key of keys) this.#busyKeys.delete(key);
        this.#inFlight.delete(done);
        this.#schedule();
      });
      this.#inFlight.add(done);
    }
  }

  #take(limit: number): Pending[] {
    const batch: Pending[] = [];
    const rest: Pending[] = [];
    const used = new Set<string>(this.#busyKeys);
    let checks = 0;
    let mutations = 0;
    let bytes = 0;
    for (const pending of this.#queue) {
      const { write } = pending;
      const fits = !pending.keys.some((key) => used.has(key)) && (batch.length === 0 || (
        batch.length < limit &&
        checks + write.checks.length <= MAX_CHECKS &&
        mutations + write.mutations.length <= MAX_MUTATIONS &&
        bytes + write.bytes <= MAX_BYTES
      ));
      for (const key of pending.keys) used.add(key);
      if (!fits) {
        rest.push(pending);
        continue;
      }
      batch.push(pending);
      checks += write.checks.length;
      mutations += write.mutations.length;
      bytes += write.bytes;
    }
    this.#queue = rest;
    return batch;
  }

  async #commitBatch(batch: Pending[]): Promise<void> {
    if (batch.length > 1) {
      const atomic = this.#kv.atomic();
      for (const { write } of batch) {
        atomic.check(...write.checks);
        atomic.mutate(...write.mutations);
      }
      let versionstamp: string | null = null;
      this.#commits++;
      this.#writes += batch.length;
      try {
        const result = await atomic.commit();
        if (result.ok) versionstamp = result.versionstamp;
      } catch {
        // e.g. a size limit: the writes are retried one by one below
      }
      if (versionstamp !== null) {
        for (const pending of batch) pending.resolve(versionstamp);
        return;
      }
    }
    this.#commits += batch.length;
    this.#writes += batch.length;
    await Promise.all(batch.map(async (pending) => {
      try {
        pending.resolve(await commitOne(this.#kv, pending.write));
      } catch (error) {
        pending.reject(error);
      }
    }));
  }
}

async function commitOne(kv: Deno.Kv, write: KvWrite): Promise<string | null> {
  const result = await kv.atomic().check(...write.checks).mutate(...write.mutations).commit();
  return result.ok ? result.versionstamp : null;
}

function keysOf(write: KvWrite): string[] {
  return [
    ...write.checks.map((check) => JSON.stringify(check.key)),
    ...write.mutations.map((mutation) => JSON.stringify(mutation.key)),
  ];
}
