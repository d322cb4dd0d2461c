/**
 * A bounded write-through cache of session records (`["s", id]`) with their versionstamps,
 * filled only by this process's own successful commits, never by reads.
 *
 * Why: a GetSession or heartbeat of a session this service just created or touched then
 * needs no KV read (a synchronous SQLite read on the JS thread plus an op round trip). In KV
 * mode the file belongs to this one process, so what it committed last is what KV holds.
 *
 * Correctness: entries change only at commits, in commit order, so a cached record is the
 * latest committed one. Reads that miss go to KV and do not fill the cache (a read racing a
 * commit could otherwise put an older record back). Writes still check the versionstamp, so a
 * stale entry (another handle on the same file, in tests) can only fail a commit, which drops
 * the entry.
 * @module
 */

import { cloneStored, type StoredSession } from "./model.ts";

/** Records kept (most recently written first to stay). */
const DEFAULT_CAPACITY = 20_000;

/** A cached record and the versionstamp it was committed with. */
export interface CachedSession {
  key: Deno.KvKey;
  value: StoredSession;
  versionstamp: string;
}

/** Recently committed session records of one KV store. */
export class SessionCache {
  #entries = new Map<string, { value: StoredSession; versionstamp: string }>();
  #capacity: number;

  constructor(capacity = DEFAULT_CAPACITY) {
    this.#capacity = capacity;
  }

  /** The record last committed for `id` (a private copy), or undefined when not cached. */
  get(id: string): CachedSession | undefined {
    const entry = this.#entries.get(id);
    if (entry === undefined) return undefined;
    return {
      key: ["s", id],
      // cloneStored, not structuredClone: Deno's structuredClone costs ~60 µs per record here.
      value: cloneStored(entry.value),
      versionstamp: entry.versionstamp,
    };
  }

  /** Record the session records `mutations` wrote in a commit at `versionstamp`. */
  committed(mutations: Deno.KvMutation[], versionstamp: string): void {
    for (const mutation of mutations) {
      const id = sessionIdOf(mutation.key);
      if (id === null) continue;
      this.#entries.delete(id); // re-inserted last: eviction drops the least recently written
      if (mutation.type === "set") {
        // A copy: the caller keeps the object it wrote and may change it.
        this.#entries.set(id, {
          value: cloneStored(mutation.value as StoredSession),
          versionstamp,
        });
        if (this.#entries.size > this.#capacity) {
          this.#entries.delete(this.#entries.keys().next().value!);
        }
      }
    }
  }

  /** A commit with these checks and mutations failed: forget the records it involved. */
  failed(checks: Deno.AtomicCheck[], mutations: Deno.KvMutation[]): void {
    for (const { key } of [...checks, ...mutations]) {
      const id = sessionIdOf(key);
      if (id !== null) this.#entries.delete(id);
    }
  }
}

function sessionIdOf(key: Deno.KvKey): string | null {
  return key.length === 2 && key[0] === "s" && typeof key[1] === "string" ? key[1] : null;
}
