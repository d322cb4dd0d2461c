/**
 * Validate an op received from an untrusted client.
 *
 * @example
 * ```ts
 * import { parseOp } from "./parse_op.ts";
 * const op = parseOp(JSON.parse('[{"path":["n"],"action":{"type":"increment","delta":1}}]'));
 * ```
 * @module
 */
import { DEFAULT_OP_LIMITS, type OpLimits, readComponent } from "./_validate.ts";
import { OpError } from "./op_error.ts";
import type { Op } from "./types.ts";

export { DEFAULT_OP_LIMITS, type OpLimits };

/**
 * Check that `value` is a well-formed op and return a fresh copy of it holding only known fields
 * (values deep-copied, so later changes to `value` cannot reach a document).
 *
 * Checks: an array of at most `maxComponents` components, each `{ path, action }`; path segments
 * are strings (object keys) or non-negative integers (list indexes), at most `maxPathLength`;
 * `action.type` is one of the eight actions with its fields of the right type (indexes and
 * offsets non-negative integers, non-empty text, positive delete length, finite delta and
 * numbers, plain JSON values nested at most `maxDepth` deep); `delete` is not at the root.
 * Whether the op fits a document is checked by `apply`.
 *
 * @throws {OpError} INVALID_ARGUMENT naming the offending field, e.g. `op[1].action.index`
 *
 * @example
 * ```ts
 * import { parseOp } from "./parse_op.ts";
 * parseOp([{ path: ["items"], action: { type: "list_insert", index: 0, value: "a" } }]);
 * ```
 */
export function parseOp(value: unknown, options: Partial<OpLimits> = {}): Op {
  const limits: OpLimits = { ...DEFAULT_OP_LIMITS, ...options };
  if (!Array.isArray(value)) {
    throw new OpError("INVALID_ARGUMENT", "op must be a list of components");
  }
  if (value.length > limits.maxComponents) {
    throw new OpError(
      "INVALID_ARGUMENT",
      `op has too many components: ${value.length}, limit ${limits.maxComponents}`,
    );
  }
  const op: Op = new Array(value.length);
  for (let i = 0; i < value.length; i++) op[i] = readComponent(value[i], i, limits, true);
  return op;
}
