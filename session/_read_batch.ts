/**
 * Read batching for Deno KV: point reads issued while a few reads are already in flight are
 * merged into `kv.getMany` calls of up to 10 keys (KV's limit), which cost little more than
 * one read each. An idle store reads at once, so sequential latency is unchanged. Every entry
 * keeps its versionstamp, so callers' optimistic checks work as with direct reads.
 * @module
 */

const GET_MANY_LIMIT = 10;
const MAX_IN_FLIGHT = 4;

interface PendingRead {
  key: Deno.KvKey;
  resolve: (entry: Deno.KvEntryMaybe<unknown>) => void;
  reject: (error: unknown) => void;
}

/** Merges concurrent point reads into shared `getMany` calls. */
export class ReadBatcher {
  #kv: Deno.Kv;
  #queue: PendingRead[] = [];
  #inFlight = 0;

  constructor(kv: Deno.Kv) {
    this.#kv = kv;
  }

  /** Read one key. */
  get<T>(key: Deno.KvKey): Promise<Deno.KvEntryMaybe<T>> {
    return new Promise((resolve, reject) => {
      this.#queue.push({
        key,
        resolve: resolve as (entry: Deno.KvEntryMaybe<unknown>) => void,
        reject,
      });
      this.#pump();
    });
  }

  /** Read several keys (entries in the order of `keys`). */
  getMany<T>(keys: Deno.KvKey[]): Promise<Deno.KvEntryMaybe<T>[]> {
    return Promise.all(keys.map((key) => this.get<T>(key)));
  }

  #pump(): void {
    while (this.#queue.length > 0 && this.#inFlight < MAX_IN_FLIGHT) {
      const chunk = this.#queue.splice(0, GET_MANY_LIMIT);
      this.#inFlight++;
      this.#kv.getMany(chunk.map((read) => read.key)).then(
        (entries) => chunk.forEach((read, i) => read.resolve(entries[i]!)),
        (error) => chunk.forEach((read) => read.reject(error)),
      ).finally(() => {
        this.#inFlight--;
        this.#pump();
      });
    }
  }
}
