/**
 * A tiny typed event emitter (works the same in browsers and Deno).
 *
 * @example
 * ```ts
 * import { Emitter } from "./emitter.ts";
 * const events = new Emitter<{ status: string }>();
 * const off = events.on("status", (s) => console.log(s));
 * events.emit("status", "online");
 * off();
 * ```
 * @module
 */

/** Listener for the payload type `T`. */
export type Listener<T> = (payload: T) => void;

/** A typed emitter for an event map `{ name: payload }`. */
export class Emitter<M extends object> {
  #listeners = new Map<keyof M, Set<Listener<never>>>();

  /** Listen to `type`; returns a function that removes the listener. */
  on<K extends keyof M>(type: K, listener: Listener<M[K]>): () => void {
    let set = this.#listeners.get(type);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(type, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(type, listener);
  }

  /** Listen to the next `type` event only. */
  once<K extends keyof M>(type: K, listener: Listener<M[K]>): () => void {
    const off = this.on(type, (payload) => {
      off();
      listener(payload);
    });
    return off;
  }

  /** Resolve with the next `type` event for which `match` holds. */
  next<K extends keyof M>(type: K, match: (payload: M[K]) => boolean = () => true): Promise<M[K]> {
    return new Promise((resolve) => {
      const off = this.on(type, (payload) => {
        if (!match(payload)) return;
        off();
        resolve(payload);
      });
    });
  }

  /** Remove a listener. */
  off<K extends keyof M>(type: K, listener: Listener<M[K]>): void {
    this.#listeners.get(type)?.delete(listener as Listener<never>);
  }

  /**
   * Call every listener of `type`. A throwing listener does not stop the others; its error
   * is reported asynchronously (like EventTarget does).
   */
  emit<K extends keyof M>(type: K, payload: M[K]): void {
    for (const listener of [...(this.#listeners.get(type) ?? [])]) {
      try {
        (listener as Listener<M[K]>)(payload);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
