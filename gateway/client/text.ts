/**
 * Helpers for binding a plain text field to a string in a document: turn an edit of the
 * field into json0 text components, and move a caret/selection through an op so a remote
 * edit does not make the local caret jump.
 *
 * @example
 * ```ts
 * import { textEditOp, transformSelection } from "./text.ts";
 * const op = textEditOp("hello", "help!", ["text"]);
 * // delete "lo" at 3, insert "p!" at 3
 * transformSelection({ start: 5, end: 5 }, op, ["text"]); // { start: 5, end: 5 }
 * ```
 * @module
 */
import type { Op, Path } from "../../statesync/json0/mod.ts";

/** A selection in a text field (start === end is a caret). UTF-16 offsets. */
export interface Selection {
  start: number;
  end: number;
}

/**
 * The components that turn `before` into `after` at `path`: one delete and/or one insert
 * around the changed span. `caret` (the caret after the edit) resolves ambiguous spans
 * (typing "a" into "aa"), so the op says what the user did.
 */
export function textEditOp(before: string, after: string, path: Path, caret?: number): Op {
  if (before === after) return [];
  const min = Math.min(before.length, after.length);
  const sameAt = (i: number) => before.charCodeAt(i) === after.charCodeAt(i);
  const sameFromEnd = (i: number) =>
    before.charCodeAt(before.length - 1 - i) === after.charCodeAt(after.length - 1 - i);
  let prefix = 0;
  let suffix = 0;
  if (caret !== undefined && caret >= 0 && caret <= after.length) {
    // The edit ends at the caret: the text after it is the unchanged suffix.
    const maxSuffix = Math.min(min, after.length - caret);
    while (suffix < maxSuffix && sameFromEnd(suffix)) suffix++;
    while (prefix < min - suffix && sameAt(prefix)) prefix++;
  } else {
    while (prefix < min && sameAt(prefix)) prefix++;
    while (suffix < min - prefix && sameFromEnd(suffix)) suffix++;
  }
  // Never split a surrogate pair.
  if (prefix > 0 && isHighSurrogate(before.charCodeAt(prefix - 1))) prefix--;
  if (suffix > 0 && isLowSurrogate(before.charCodeAt(before.length - suffix))) suffix--;
  const removed = before.length - prefix - suffix;
  const inserted = after.slice(prefix, after.length - suffix);
  const op: Op = [];
  if (removed > 0) {
    op.push({ path, action: { type: "text_delete", offset: prefix, length: removed } });
  }
  if (inserted.length > 0) {
    op.push({ path, action: { type: "text_insert", offset: prefix, text: inserted } });
  }
  return op;
}

/**
 * Where a caret at `index` in the string at `path` ends up after `op`. An insert exactly at
 * the caret pushes it along only when `pushedByInsertAt` is true (the default keeps the
 * caret before text someone else typed at the same place).
 */
export function transformIndex(
  index: number,
  op: Op,
  path: Path,
  options: { pushedByInsertAt?: boolean; length?: number } = {},
): number {
  let out = index;
  for (const c of op) {
    if (!samePath(c.path, path)) continue;
    const a = c.action;
    if (a.type === "text_insert") {
      if (a.offset < out || (a.offset === out && options.pushedByInsertAt === true)) {
        out += a.text.length;
      }
    } else if (a.type === "text_delete") {
      if (a.offset < out) out -= Math.min(a.length, out - a.offset);
    } else if (a.type === "set") {
      out = Math.min(out, typeof a.value === "string" ? a.value.length : 0);
    }
  }
  return options.length === undefined ? out : Math.min(Math.max(0, out), options.length);
}

/**
 * Move a selection through `op` (see {@linkcode transformIndex}); set `pushedByInsertAt`
 * for the selection of the op's author (their own typing moves their caret).
 */
export function transformSelection(
  selection: Selection,
  op: Op,
  path: Path,
  options: { pushedByInsertAt?: boolean; length?: number } = {},
): Selection {
  const start = transformIndex(selection.start, op, path, options);
  const end = selection.end === selection.start
    ? start
    : transformIndex(selection.end, op, path, options);
  return { start, end: Math.max(start, end) };
}

function samePath(a: Path, b: Path): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}
