/** Private test helpers: terse component builders. */
import type { Component, Json, Path } from "./types.ts";

/** `set` at path. */
export function set(path: Path, value: Json): Component {
  return { path, action: { type: "set", value } };
}
/** `delete` at path. */
export function del(path: Path): Component {
  return { path, action: { type: "delete" } };
}
/** `text_insert` into the string at path. */
export function ti(path: Path, offset: number, text: string): Component {
  return { path, action: { type: "text_insert", offset, text } };
}
/** `text_delete` from the string at path. */
export function td(path: Path, offset: number, length: number): Component {
  return { path, action: { type: "text_delete", offset, length } };
}
/** `list_insert` into the list at path. */
export function li(path: Path, index: number, value: Json): Component {
  return { path, action: { type: "list_insert", index, value } };
}
/** `list_delete` from the list at path. */
export function ld(path: Path, index: number): Component {
  return { path, action: { type: "list_delete", index } };
}
/** `list_move` within the list at path. */
export function lm(path: Path, from: number, to: number): Component {
  return { path, action: { type: "list_move", from, to } };
}
/** `increment` of the number at path. */
export function inc(path: Path, delta: number): Component {
  return { path, action: { type: "increment", delta } };
}
