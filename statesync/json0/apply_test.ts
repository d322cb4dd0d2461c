import { deepStrictEqual, equal, ok, strictEqual, throws } from "node:assert/strict";
import { apply } from "./apply.ts";
import { OpError } from "./op_error.ts";
import { del, inc, ld, li, lm, set, td, ti } from "./_ops_test_util.ts";
import type { Json, Op, Path } from "./types.ts";

function fails(
  doc: Json,
  op: Op,
  status: OpError["status"],
  message: RegExp,
  path?: Path,
): void {
  const before = structuredClone(doc);
  throws(() => apply(doc, op), (error: unknown) => {
    ok(error instanceof OpError, `expected OpError, got ${error}`);
    strictEqual(error.status, status);
    ok(message.test(error.message), `message ${JSON.stringify(error.message)} !~ ${message}`);
    if (path !== undefined) deepStrictEqual(error.path, path);
    return true;
  });
  deepStrictEqual(doc, before, "the document must not change");
}

Deno.test("apply() sets, creates and replaces values at object keys, list elements and the root", () => {
  const doc: Json = { a: 1, list: [1, 2, 3] };
  deepStrictEqual(apply(doc, [set(["a"], "x")]), { a: "x", list: [1, 2, 3] });
  deepStrictEqual(apply(doc, [set(["b"], { c: [] })]), { a: 1, b: { c: [] }, list: [1, 2, 3] });
  deepStrictEqual(apply(doc, [set(["list", 1], null)]), { a: 1, list: [1, null, 3] });
  deepStrictEqual(apply(doc, [set([], [true])]), [true]);
});

Deno.test("apply() deletes object keys and list elements", () => {
  const doc: Json = { a: 1, b: { c: 2 }, list: ["x", "y", "z"] };
  deepStrictEqual(apply(doc, [del(["b", "c"])]), { a: 1, b: {}, list: ["x", "y", "z"] });
  deepStrictEqual(apply(doc, [del(["list", 0])]), { a: 1, b: { c: 2 }, list: ["y", "z"] });
  deepStrictEqual(apply(doc, [ld(["list"], 2)]), { a: 1, b: { c: 2 }, list: ["x", "y"] });
});

Deno.test("apply() inserts and deletes text in UTF-16 code units", () => {
  const doc: Json = { t: "hello" };
  deepStrictEqual(apply(doc, [ti(["t"], 5, " world")]), { t: "hello world" });
  deepStrictEqual(apply(doc, [ti(["t"], 0, ">")]), { t: ">hello" });
  deepStrictEqual(apply(doc, [td(["t"], 1, 3)]), { t: "ho" });
  deepStrictEqual(apply({ t: "a😀b" }, [td(["t"], 1, 2)]), { t: "ab" });
  deepStrictEqual(apply("abc", [ti([], 1, "-")]), "a-bc");
});

Deno.test("apply() inserts, deletes and moves list elements", () => {
  const doc: Json = { l: ["a", "b", "c", "d"] };
  deepStrictEqual(apply(doc, [li(["l"], 4, "e")]), { l: ["a", "b", "c", "d", "e"] });
  deepStrictEqual(apply(doc, [li(["l"], 0, { x: 1 })]), { l: [{ x: 1 }, "a", "b", "c", "d"] });
  deepStrictEqual(apply(doc, [ld(["l"], 1)]), { l: ["a", "c", "d"] });
  deepStrictEqual(apply(doc, [lm(["l"], 0, 3)]), { l: ["b", "c", "d", "a"] });
  deepStrictEqual(apply(doc, [lm(["l"], 3, 1)]), { l: ["a", "d", "b", "c"] });
  deepStrictEqual(apply(doc, [lm(["l"], 2, 2)]), doc);
});

Deno.test("apply() increments numbers", () => {
  deepStrictEqual(apply({ n: 1.5 }, [inc(["n"], 2)]), { n: 3.5 });
  deepStrictEqual(apply([10], [inc([0], -11)]), [-1]);
});

Deno.test("apply() applies components in order and later ones see earlier results", () => {
  const doc: Json = { l: [] };
  const op: Op = [
    li(["l"], 0, { t: "" }),
    ti(["l", 0, "t"], 0, "ab"),
    set(["l", 0, "n"], 0),
    inc(["l", 0, "n"], 5),
    td(["l", 0, "t"], 0, 1),
    li(["l"], 0, "first"),
    lm(["l"], 0, 1),
  ];
  deepStrictEqual(apply(doc, op), { l: [{ t: "b", n: 5 }, "first"] });
  deepStrictEqual(doc, { l: [] });
});

Deno.test("apply() is pure: the input document is never mutated and untouched subtrees are shared", () => {
  const untouched = { deep: [1, 2, 3] };
  const doc: Json = { keep: untouched, edit: { list: [1] } };
  const snapshot = structuredClone(doc);
  const op: Op = [{ path: ["edit", "list"], action: { type: "list_insert", index: 1, value: 2 } }];
  const result = apply(doc, op) as { keep: Json; edit: { list: Json[] } };
  deepStrictEqual(doc, snapshot);
  strictEqual(result.keep, untouched);
  deepStrictEqual(result.edit.list, [1, 2]);
});

Deno.test("apply() does not leak an op's value into later edits of the same document", () => {
  const value = { inner: [1] };
  const doc = apply({}, [set(["v"], value)]);
  const next = apply(doc, [li(["v", "inner"], 1, 2)]);
  deepStrictEqual(value, { inner: [1] });
  deepStrictEqual(doc, { v: { inner: [1] } });
  deepStrictEqual(next, { v: { inner: [1, 2] } });
});

Deno.test("apply() applies nothing when a later component fails", () => {
  const doc: Json = { t: "abc", l: [1] };
  fails(doc, [ti(["t"], 0, "x"), li(["l"], 0, 0), inc(["t"], 1)], "FAILED_PRECONDITION", /number/);
});

Deno.test("apply() refuses a path that does not exist with FAILED_PRECONDITION naming it", () => {
  fails({ a: {} }, [set(["a", "b", "c"], 1)], "FAILED_PRECONDITION", /no key "b"/, ["a", "b", "c"]);
  fails({ a: 1 }, [del(["b"])], "FAILED_PRECONDITION", /no key "b"/, ["b"]);
  fails({ l: [1] }, [ti(["l", 3], 0, "x")], "FAILED_PRECONDITION", /index 3 is out of range/);
  fails({ a: [] }, [set(["a", "k"], 1)], "FAILED_PRECONDITION", /needs an object/);
  fails({ a: {} }, [set(["a", 0], 1)], "FAILED_PRECONDITION", /needs a list/);
});

Deno.test("apply() refuses type mismatches such as a text insert into a number", () => {
  fails({ n: 1 }, [ti(["n"], 0, "x")], "FAILED_PRECONDITION", /needs a string, found number/, [
    "n",
  ]);
  fails({ s: "x" }, [inc(["s"], 1)], "FAILED_PRECONDITION", /needs a number, found string/);
  fails({ o: {} }, [li(["o"], 0, 1)], "FAILED_PRECONDITION", /needs a list, found object/);
  fails({ s: "abc" }, [lm(["s"], 0, 1)], "FAILED_PRECONDITION", /needs a list, found string/);
  fails({ s: "abc" }, [td(["s", "x"], 0, 1)], "FAILED_PRECONDITION", /needs an object/);
});

Deno.test("apply() refuses indexes, offsets and ranges out of bounds", () => {
  fails({ l: [1, 2] }, [li(["l"], 3, 0)], "FAILED_PRECONDITION", /Index 3 is out of range/);
  fails({ l: [1, 2] }, [ld(["l"], 2)], "FAILED_PRECONDITION", /out of range/);
  fails({ l: [1, 2] }, [del(["l", 2])], "FAILED_PRECONDITION", /out of range/);
  fails({ l: [1, 2] }, [set(["l", 2], 0)], "FAILED_PRECONDITION", /use list_insert/);
  fails({ l: [1, 2] }, [lm(["l"], 0, 2)], "FAILED_PRECONDITION", /Move 0 -> 2 is out of range/);
  fails({ l: [1, 2] }, [lm(["l"], 2, 0)], "FAILED_PRECONDITION", /Move 2 -> 0/);
  fails({ t: "ab" }, [ti(["t"], 3, "x")], "FAILED_PRECONDITION", /Offset 3 is out of range/);
  fails({ t: "ab" }, [td(["t"], 1, 2)], "FAILED_PRECONDITION", /Range 1\.\.3 is out of range/);
});

Deno.test("apply() refuses malformed components with INVALID_ARGUMENT", () => {
  fails({ n: 1 }, [inc(["n"], Number.NaN)], "INVALID_ARGUMENT", /delta must be a finite number/);
  fails({}, [set(["x"], { y: [Infinity] })], "INVALID_ARGUMENT", /value\.y\[0\] must be a finite/);
  fails({ l: [] }, [li(["l"], -1, 0)], "INVALID_ARGUMENT", /index must be a non-negative integer/);
  fails({ l: [1] }, [ld(["l"], 0.5)], "INVALID_ARGUMENT", /index must be a non-negative integer/);
  fails({ l: [1] }, [set(["l", -1], 0)], "INVALID_ARGUMENT", /path\[1\]/);
  fails({ a: 1 }, [del([])], "INVALID_ARGUMENT", /Cannot delete the document root/);
  fails({}, [{ path: ["a"], action: { type: "upsert" } } as never], "INVALID_ARGUMENT", /type/);
  fails({}, "nope" as never, "INVALID_ARGUMENT", /op must be a list/);
});

Deno.test("apply() refuses an increment that overflows to a non-finite number", () => {
  fails({ n: Number.MAX_VALUE }, [inc(["n"], Number.MAX_VALUE)], "FAILED_PRECONDITION", /overflow/);
});

Deno.test("apply() reports the failing component's index", () => {
  throws(() => apply({ a: 1 }, [inc(["a"], 1), inc(["b"], 1)]), (error: unknown) => {
    ok(error instanceof OpError);
    equal(error.component, 1);
    ok(error.message.includes("op[1]"));
    return true;
  });
});

Deno.test("apply() stores a __proto__ key as plain data without touching prototypes", () => {
  const doc = apply({}, [set(["__proto__"], { polluted: true })]) as Record<string, Json>;
  ok(Object.hasOwn(doc, "__proto__"));
  strictEqual(Object.getPrototypeOf(doc), Object.prototype);
  strictEqual(({} as Record<string, unknown>).polluted, undefined);
  const edited = apply(doc, [set(["__proto__", "polluted"], false)]) as Record<string, Json>;
  deepStrictEqual(Object.getOwnPropertyDescriptor(edited, "__proto__")?.value, { polluted: false });
});
