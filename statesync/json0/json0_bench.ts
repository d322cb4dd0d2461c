/**
 * Micro-benchmarks of the OT core: `deno bench statesync/json0/json0_bench.ts`.
 */
import { apply } from "./apply.ts";
import { parseOp } from "./parse_op.ts";
import { transform } from "./transform.ts";
import type { Json, Op } from "./types.ts";

const doc: Json = {
  title: "Weekly planning",
  body: "x".repeat(1000),
  items: Array.from({ length: 50 }, (_, i) => ({ text: `item ${i}`, done: false })),
  counters: { views: 0 },
};
const bigList: Json = { rows: Array.from({ length: 10_000 }, (_, i) => ({ text: `row ${i}` })) };

const insert: Op = [{ path: ["body"], action: { type: "text_insert", offset: 500, text: "a" } }];
const concurrent: Op = [{
  path: ["body"],
  action: { type: "text_insert", offset: 100, text: "b" },
}];
const history: Op[] = Array.from({ length: 50 }, (_, i) => [
  { path: ["body"], action: { type: "text_insert", offset: (i * 37) % 1000, text: "c" } },
]);
const rowEdit: Op = [
  { path: ["rows", 5000, "text"], action: { type: "text_insert", offset: 0, text: "!" } },
];
const raw = JSON.stringify(insert);

Deno.bench("apply: text insert into a 1,000-char string of a small doc", () => {
  apply(doc, insert);
});
Deno.bench("apply: text insert in element 5,000 of a 10,000-element list", () => {
  apply(bigList, rowEdit);
});
Deno.bench("transform: text insert against a concurrent text insert", () => {
  transform(insert, concurrent, "right");
});
Deno.bench("transform: text insert against 50 history ops (fold)", () => {
  let op = insert;
  for (const h of history) op = transform(op, h, "right");
});
Deno.bench("parseOp: JSON text insert from the wire", () => {
  parseOp(JSON.parse(raw));
});
