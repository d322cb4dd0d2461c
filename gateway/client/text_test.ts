import assert from "node:assert/strict";
import { apply } from "../../statesync/json0/mod.ts";
import { textEditOp, transformIndex, transformSelection } from "./text.ts";

const P = ["text"];

function roundTrip(before: string, after: string, caret?: number) {
  const op = textEditOp(before, after, P, caret);
  assert.deepEqual(apply({ text: before }, op), { text: after }, `${before} -> ${after}`);
  return op;
}

Deno.test("textEditOp() turns typing, deleting and replacing into components that reproduce the edit", () => {
  assert.deepEqual(roundTrip("hello", "hello"), []);
  assert.deepEqual(roundTrip("hello", "hello!"), [
    { path: P, action: { type: "text_insert", offset: 5, text: "!" } },
  ]);
  assert.deepEqual(roundTrip("hello", "hllo"), [
    { path: P, action: { type: "text_delete", offset: 1, length: 1 } },
  ]);
  assert.deepEqual(roundTrip("hello world", "hello there world"), [
    { path: P, action: { type: "text_insert", offset: 6, text: "there " } },
  ]);
  assert.deepEqual(roundTrip("abcdef", "abXYef"), [
    { path: P, action: { type: "text_delete", offset: 2, length: 2 } },
    { path: P, action: { type: "text_insert", offset: 2, text: "XY" } },
  ]);
  roundTrip("", "new text");
  roundTrip("all gone", "");
});

Deno.test("textEditOp() uses the caret to tell which of two equal characters was typed", () => {
  // Typing "a" at the start of "aa": without the caret the diff would say offset 2.
  assert.deepEqual(roundTrip("aa", "aaa", 1), [
    { path: P, action: { type: "text_insert", offset: 0, text: "a" } },
  ]);
  assert.deepEqual(roundTrip("aa", "aaa"), [
    { path: P, action: { type: "text_insert", offset: 2, text: "a" } },
  ]);
  // Backspace of the middle "b" in "abbc", caret ends at 2.
  assert.deepEqual(roundTrip("abbc", "abc", 2), [
    { path: P, action: { type: "text_delete", offset: 2, length: 1 } },
  ]);
  assert.deepEqual(roundTrip("abbc", "abc", 1), [
    { path: P, action: { type: "text_delete", offset: 1, length: 1 } },
  ]);
});

Deno.test("textEditOp() never splits a surrogate pair", () => {
  const op = roundTrip("a😀b", "a😃b");
  assert.deepEqual(op, [
    { path: P, action: { type: "text_delete", offset: 1, length: 2 } },
    { path: P, action: { type: "text_insert", offset: 1, text: "😃" } },
  ]);
});

Deno.test("transformIndex() keeps a caret on the same character across remote edits", () => {
  const before = "The quick fox";
  const caret = before.indexOf("fox");
  const insertBefore = textEditOp(before, "The very quick fox", P);
  assert.equal(transformIndex(caret, insertBefore, P), "The very quick fox".indexOf("fox"));
  const insertAfter = textEditOp(before, "The quick fox jumps", P);
  assert.equal(transformIndex(caret, insertAfter, P), caret);
  const deleteAround = [{
    path: P,
    action: { type: "text_delete" as const, offset: 2, length: 10 },
  }];
  assert.equal(
    transformIndex(caret, deleteAround, P),
    2,
    "caret inside a deleted span lands at its start",
  );
  const otherPath = [{
    path: ["title"],
    action: { type: "text_insert" as const, offset: 0, text: "xx" },
  }];
  assert.equal(transformIndex(caret, otherPath, P), caret);
  const atCaret = [{
    path: P,
    action: { type: "text_insert" as const, offset: caret, text: "red " },
  }];
  assert.equal(
    transformIndex(caret, atCaret, P),
    caret,
    "remote text typed at my caret goes after it",
  );
  assert.equal(transformIndex(caret, atCaret, P, { pushedByInsertAt: true }), caret + 4);
});

Deno.test("transformSelection() moves both ends and clamps to the new length", () => {
  const op = [{ path: P, action: { type: "text_insert" as const, offset: 0, text: ">> " } }];
  assert.deepEqual(transformSelection({ start: 2, end: 5 }, op, P), { start: 5, end: 8 });
  const set = [{ path: P, action: { type: "set" as const, value: "ab" } }];
  assert.deepEqual(transformSelection({ start: 4, end: 9 }, set, P), { start: 2, end: 2 });
  assert.deepEqual(transformSelection({ start: 4, end: 9 }, [], P, { length: 6 }), {
    start: 4,
    end: 6,
  });
});
