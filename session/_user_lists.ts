/**
 * A write-through in-memory copy of the KV store's user lists (`["u", userId]` → ids of the
 * user's sessions) with their versionstamps, loaded when the store opens.
 *
 * Why: a create must know the user's list (per-user limit) and check its versionstamp. Reading
 * it from KV first costs a round trip to KV's thread per create, and that read splits
 * concurrent creates across several group commits. In KV mode the file belongs to this one
 * process, so the copy is current and the read can be skipped.
 *
 * Exactness does not rest on the copy: every write still carries the versionstamp check, so a
 * stale copy can only make a commit fail. The failed user is then marked stale and read from
 * KV until a commit of this process writes its list again.
 * @module
 */

/** One user's list as KV holds it (`versionstamp` null: no list). */
export type UserListEntry = Deno.KvEntryMaybe<string[]>;

/** The user lists of one KV store. */
export class UserLists {
  #lists = new Map<string, { ids: string[]; versionstamp: string }>();
  #stale = new Set<string>();

  /** Load every user list of `kv`. */
  static async load(kv: Deno.Kv): Promise<UserLists> {
    const lists = new UserLists();
    for await (const entry of kv.list<string[]>({ prefix: ["u"] }, { batchSize: 1000 })) {
      const userId = entry.key[1];
      if (typeof userId === "string") {
        lists.#lists.set(userId, { ids: entry.value, versionstamp: entry.versionstamp });
      }
    }
    return lists;
  }

  /** The user's list, or undefined when it must be read from KV (marked stale). */
  get(userId: string): UserListEntry | undefined {
    if (this.#stale.has(userId)) return undefined;
    const list = this.#lists.get(userId);
    return list === undefined
      ? { key: ["u", userId], value: null, versionstamp: null }
      : { key: ["u", userId], value: list.ids, versionstamp: list.versionstamp };
  }

  /** Record the user lists `mutations` wrote in a commit at `versionstamp`. */
  committed(mutations: Deno.KvMutation[], versionstamp: string): void {
    for (const mutation of mutations) {
      const userId = userIdOf(mutation.key);
      if (userId === null) continue;
      this.#stale.delete(userId);
      if (mutation.type === "set") {
        this.#lists.set(userId, { ids: mutation.value as string[], versionstamp });
      } else {
        this.#lists.delete(userId);
      }
    }
  }

  /** A commit checking these keys failed: read their user lists from KV from now on. */
  failed(checks: Deno.AtomicCheck[]): void {
    for (const check of checks) {
      const userId = userIdOf(check.key);
      if (userId !== null) this.#stale.add(userId);
    }
  }
}

function userIdOf(key: Deno.KvKey): string | null {
  return key.length === 2 && key[0] === "u" && typeof key[1] === "string" ? key[1] : null;
}
