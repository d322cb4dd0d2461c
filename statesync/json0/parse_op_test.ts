import { deepStrictEqual, notStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import { OpError } from "./op_error.ts";
import { parseOp } from "./parse_op.ts";
import type { Json, Op } from "./types.ts";

function rejects(value: unknown, field: RegExp, options: Parameters<typeof parseOp>[1] = {}): void {
  throws(() => parseOp(value, options), (error: unknown) => {
    ok(error instanceof OpError, `expected OpError, got ${error}`);
    strictEqual(error.status, "INVALID_ARGUMENT");
    ok(field.test(error.message), `message ${JSON.stringify(error.message)} !~ ${field}`);
    return true;
  });
}

Deno.test("parseOp() accepts every action and returns a fresh copy without unknown fields", () => {
  const input = [
    { path: ["a"], action: { type: "set", value: { x: [1, "two", null, true] } }, extra: 1 },
    { path: ["a", "x", 0], action: { type: "delete" } },
    { path: ["s"], action: { type: "text_insert", offset: 0, text: "hi", junk: true } },
    { path: ["s"], action: { type: "text_delete", offset: 1, length: 2 } },
    { path: ["l"], action: { type: "list_insert", index: 0, value: null } },
    { path: ["l"], action: { type: "list_delete", index: 3 } },
    { path: ["l"], action: { type: "list_move", from: 0, to: 2 } },
    { path: ["n"], action: { type: "increment", delta: -1.5 } },
    { path: [], action: { type: "set", value: [] } },
  ];
  const op = parseOp(input);
  const expected: Op = [
    { path: ["a"], action: { type: "set", value: { x: [1, "two", null, true] } } },
    { path: ["a", "x", 0], action: { type: "delete" } },
    { path: ["s"], action: { type: "text_insert", offset: 0, text: "hi" } },
    { path: ["s"], action: { type: "text_delete", offset: 1, length: 2 } },
    { path: ["l"], action: { type: "list_insert", index: 0, value: null } },
    { path: ["l"], action: { type: "list_delete", index: 3 } },
    { path: ["l"], action: { type: "list_move", from: 0, to: 2 } },
    { path: ["n"], action: { type: "increment", delta: -1.5 } },
    { path: [], action: { type: "set", value: [] } },
  ];
  deepStrictEqual(op, expected);
  notStrictEqual(op[0]!.path, input[0]!.path);
  (input[0]!.action.value as { x: Json[] }).x.push("later");
  deepStrictEqual(op[0]!.action, { type: "set", value: { x: [1, "two", null, true] } });
});

Deno.test("parseOp() rejects values that are not ops, naming the field", () => {
  rejects("op", /op must be a list/);
  rejects({ path: [] }, /op must be a list/);
  rejects([null], /op\[0\] must be an object/);
  rejects([[]], /op\[0\] must be an object/);
  rejects([{ action: { type: "delete" } }], /op\[0\]\.path must be a list/);
  rejects([{ path: "a", action: { type: "delete" } }], /op\[0\]\.path must be a list/);
  rejects([{ path: ["a"] }], /op\[0\]\.action must be an object/);
});

Deno.test("parseOp() rejects bad path segments and too-long paths", () => {
  const del = (path: unknown) => [{ path, action: { type: "delete" } }];
  rejects(del(["a", -1]), /op\[0\]\.path\[1\]/);
  rejects(del([1.5]), /op\[0\]\.path\[0\]/);
  rejects(del([true]), /op\[0\]\.path\[0\]/);
  rejects(del([null]), /op\[0\]\.path\[0\]/);
  rejects(del([Number.NaN]), /op\[0\]\.path\[0\]/);
  rejects(del(new Array(65).fill("k")), /too long: 65 segments, limit 64/);
  rejects(del(["a", "b", "c"]), /limit 2/, { maxPathLength: 2 });
  rejects(del([]), /Cannot delete the document root/);
});

Deno.test("parseOp() rejects unknown actions and fields of the wrong type", () => {
  const one = (action: unknown) => [{ path: ["x"], action }];
  rejects(one({ type: "upsert" }), /op\[0\]\.action\.type must be one of set, delete/);
  rejects(one({}), /action\.type must be one of/);
  rejects(one({ type: "set" }), /op\[0\]\.action\.value is required/);
  rejects(one({ type: "set", value: undefined }), /action\.value must be a JSON value/);
  rejects(
    one({ type: "set", value: { a: [1, Number.POSITIVE_INFINITY] } }),
    /value\.a\[1\] must be a finite/,
  );
  rejects(one({ type: "set", value: new Date(0) }), /value must be a plain JSON object/);
  rejects(one({ type: "set", value: new Map() }), /plain JSON object/);
  rejects(one({ type: "set", value: () => 1 }), /must be a JSON value, not function/);
  rejects(
    one({ type: "text_insert", offset: 0, text: 5 }),
    /action\.text must be a non-empty string/,
  );
  rejects(one({ type: "text_insert", offset: 0, text: "" }), /non-empty string/);
  rejects(
    one({ type: "text_insert", offset: -1, text: "a" }),
    /action\.offset must be a non-negative integer/,
  );
  rejects(one({ type: "text_insert", offset: "0", text: "a" }), /action\.offset/);
  rejects(one({ type: "text_delete", offset: 0, length: 0 }), /action\.length must be positive/);
  rejects(one({ type: "text_delete", offset: 0 }), /action\.length must be a non-negative integer/);
  rejects(one({ type: "list_insert", index: 0 }), /action\.value is required/);
  rejects(
    one({ type: "list_insert", index: -2, value: 1 }),
    /action\.index must be a non-negative/,
  );
  rejects(one({ type: "list_delete", index: 2 ** 53 }), /action\.index/);
  rejects(one({ type: "list_move", from: 0 }), /action\.to must be a non-negative integer/);
  rejects(one({ type: "list_move", from: -1, to: 0 }), /action\.from/);
  rejects(one({ type: "increment", delta: Number.NaN }), /action\.delta must be a finite number/);
  rejects(one({ type: "increment", delta: "1" }), /action\.delta must be a finite number/);
});

Deno.test("parseOp() enforces the component count and value depth limits", () => {
  const component = { path: ["n"], action: { type: "increment", delta: 1 } };
  strictEqual(parseOp(new Array(1000).fill(component)).length, 1000);
  rejects(new Array(1001).fill(component), /too many components: 1001, limit 1000/);
  rejects([component, component], /limit 1/, { maxComponents: 1 });
  let deep: Json = 0;
  for (let i = 0; i < 70; i++) deep = [deep];
  rejects([{ path: [], action: { type: "set", value: deep } }], /nested too deeply \(limit 64\)/);
});

Deno.test("parseOp() names the failing component's index and keeps its path", () => {
  throws(
    () =>
      parseOp([
        { path: ["ok"], action: { type: "delete" } },
        { path: ["items", 2], action: { type: "list_move", from: 1, to: -1 } },
      ]),
    (error: unknown) => {
      ok(error instanceof OpError);
      strictEqual(error.component, 1);
      deepStrictEqual(error.path, ["items", 2]);
      ok(error.message.startsWith("op[1].action.to"));
      return true;
    },
  );
});

Deno.test("parseOp() keeps a __proto__ key from JSON input as plain data", () => {
  const op = parseOp(
    JSON.parse('[{"path":["a"],"action":{"type":"set","value":{"__proto__":{"x":1}}}}]'),
  );
  const value = (op[0]!.action as { value: Record<string, Json> }).value;
  ok(Object.hasOwn(value, "__proto__"));
  strictEqual(Object.getPrototypeOf(value), Object.prototype);
  deepStrictEqual(Object.getOwnPropertyDescriptor(value, "__proto__")?.value, { x: 1 });
});
