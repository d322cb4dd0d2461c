import assert from "node:assert/strict";
import { newId } from "../kernel/mod.ts";
import { seededRandom } from "../kernel/testing.ts";
import { ClientMessage } from "./ws_hub.ts";
import { fastOpMessage } from "./ws_op_message.ts";

const DOC = newId();

function validOps(): Record<string, unknown>[] {
  return [
    {
      type: "op",
      document_id: DOC,
      base_version: 3,
      components: [{ type: "text_insert", path: ["text"], offset: 0, text: "a" }],
    },
    {
      type: "op",
      id: 7,
      document_id: DOC,
      base_version: 0,
      client_op_id: "c-1",
      components: [
        { type: "set", path: ["a", 0], value: { x: [1, null] } },
        { type: "delete", path: [] },
        { type: "text_delete", path: ["t"], offset: 2, length: 1 },
        { type: "list_insert", path: ["l"], index: 0, value: null },
        { type: "list_delete", path: ["l"], index: 1 },
        { type: "list_move", path: ["l"], from: 0, to: 2 },
        { type: "increment", path: ["n"], delta: -1.5 },
      ],
    },
    {
      type: "op",
      id: "x".repeat(64),
      document_id: DOC,
      base_version: 1,
      client_op_id: "é".repeat(128),
      components: [{ type: "text_insert", path: ["text"], offset: 5, text: "😀" }],
    },
  ];
}

// Values that break one field or another (types, ranges, lengths, odd keys).
const ODD_VALUES: unknown[] = [
  undefined,
  null,
  -1,
  1.5,
  2 ** 60,
  0,
  1,
  "",
  "x".repeat(65),
  "😀".repeat(40),
  "x".repeat(129),
  "😀".repeat(100),
  [],
  ["a", -1],
  [1.5],
  Array.from({ length: 65 }, () => "k"),
  {},
  { type: "text_insert" },
  { type: "bogus", path: [] },
  { type: "text_insert", path: ["t"], offset: 0, text: "a", extra: 1 },
  { type: "set", path: ["t"] },
  { type: "text_delete", path: ["t"], offset: 0, length: 0 },
  true,
  "op",
  newId(),
  "not-a-uuid",
];

function mutate(base: Record<string, unknown>, random: () => number): unknown {
  const message = structuredClone(base);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const keys = [
    "type",
    "id",
    "document_id",
    "base_version",
    "client_op_id",
    "components",
    "extra",
    "__proto__",
  ];
  const edits = 1 + Math.floor(random() * 2);
  for (let i = 0; i < edits; i++) {
    const key = pick(keys);
    const where = random();
    if (where < 0.5) {
      const value = pick(ODD_VALUES);
      if (value === undefined) delete message[key];
      else Object.defineProperty(message, key, { value, enumerable: true, writable: true });
    } else {
      // Break one component (or the whole list).
      const components = message.components as unknown[];
      if (!Array.isArray(components) || components.length === 0) continue;
      const index = Math.floor(random() * components.length);
      const component = components[index] as Record<string, unknown>;
      if (typeof component !== "object" || component === null) continue;
      const field = pick(["type", "path", "offset", "text", "value", "length", "index", "zz"]);
      const value = pick(ODD_VALUES);
      if (value === undefined) delete component[field];
      else component[field] = value;
      if (random() < 0.1) components.length = 1001;
    }
  }
  return JSON.parse(JSON.stringify(message));
}

Deno.test("fastOpMessage accepts the valid op messages, as they are", () => {
  for (const message of validOps()) {
    const fast = fastOpMessage(message);
    assert.equal(fast, message);
    const parsed = ClientMessage.safeParse(message);
    assert.ok(parsed.success);
    assert.deepEqual(parsed.data, message);
  }
});

Deno.test("fastOpMessage never accepts what the zod schema rejects, nor changes the output", () => {
  const random = seededRandom(12);
  let accepted = 0;
  let rejected = 0;
  for (let i = 0; i < 5_000; i++) {
    const message = mutate(validOps()[i % 3]!, random);
    const fast = fastOpMessage(message);
    const parsed = ClientMessage.safeParse(message);
    if (fast === undefined) {
      rejected++;
      continue;
    }
    accepted++;
    assert.ok(parsed.success, `fast path accepted ${JSON.stringify(message)}`);
    assert.deepEqual(parsed.data, fast);
  }
  // Both branches were exercised.
  assert.ok(accepted > 100 && rejected > 100, `accepted ${accepted}, rejected ${rejected}`);
});

Deno.test("fastOpMessage leaves other message types and non-objects to zod", () => {
  for (const message of [null, 1, "op", [], { type: "ping" }, { type: "auth", token: "t" }]) {
    assert.equal(fastOpMessage(message), undefined);
  }
  const array = Object.assign([], { type: "op" });
  assert.equal(fastOpMessage(array), undefined);
});
