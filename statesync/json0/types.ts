/**
 * Types of the json0-family operations used by StateSync. Pure TypeScript,
 * browser-safe: no Deno APIs, no proto imports.
 *
 * @example
 * ```ts
 * import type { Op } from "./types.ts";
 * const op: Op = [{ path: ["title"], action: { type: "text_insert", offset: 0, text: "Hi " } }];
 * ```
 * @module
 */

/** A JSON value: the content of a document. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A path into a JSON tree: object keys (strings) and list indexes (numbers). */
export type Path = readonly (string | number)[];

/** One edit at a path. */
export type Action =
  /** Replace or create the value at path (object key, list element, root `[]`). */
  | { type: "set"; value: Json }
  /** Remove the object key or list element at path. */
  | { type: "delete" }
  /** Insert text into the string at path; offsets in UTF-16 code units. */
  | { type: "text_insert"; offset: number; text: string }
  /** Delete `length` UTF-16 code units from the string at path. */
  | { type: "text_delete"; offset: number; length: number }
  /** Insert `value` at `index` into the list at path. */
  | { type: "list_insert"; index: number; value: Json }
  /** Remove the element at `index` from the list at path. */
  | { type: "list_delete"; index: number }
  /** Move the element at `from` so that it ends up at index `to` of the list at path. */
  | { type: "list_move"; from: number; to: number }
  /** Add `delta` to the number at path. */
  | { type: "increment"; delta: number };

/** One component of an operation: an action at a path. */
export interface Component {
  /** Where the action applies. */
  path: Path;
  /** What to do there. */
  action: Action;
}

/** An operation: components applied in order, atomically. */
export type Op = Component[];

/** Tie-break side for transform: `"left"` wins. */
export type Side = "left" | "right";

/** A genuine collision found while transforming (set/set with different values, set/delete). */
export interface Collision {
  /** Path both ops wrote. */
  path: Path;
  /** The value the already applied op wrote there (`undefined` = deleted). */
  appliedValue: Json | undefined;
  /** The value the incoming op wanted to write (`undefined` = delete). */
  incomingValue: Json | undefined;
}
