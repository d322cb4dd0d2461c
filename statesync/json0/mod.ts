/**
 * json0-family operational transformation for StateSync documents: op types, a pure `apply`,
 * `transform` with deterministic tie-breaks, collision reporting and `parseOp` for untrusted
 * input. Browser-safe: no Deno APIs, no proto imports.
 *
 * @example
 * ```ts
 * import { apply, parseOp, transform } from "./mod.ts";
 * const a = parseOp([{ path: ["t"], action: { type: "text_insert", offset: 0, text: "A" } }]);
 * const b = parseOp([{ path: ["t"], action: { type: "text_insert", offset: 0, text: "B" } }]);
 * const left = apply(apply({ t: "" }, a), transform(b, a, "right"));
 * const right = apply(apply({ t: "" }, b), transform(a, b, "left"));
 * // left and right are both { t: "AB" }
 * ```
 * @module
 */
export type { Action, Collision, Component, Json, Op, Path, Side } from "./types.ts";
export { OpError, type OpErrorStatus } from "./op_error.ts";
export { apply } from "./apply.ts";
export { transform, transformWithCollisions } from "./transform.ts";
export { DEFAULT_OP_LIMITS, type OpLimits, parseOp } from "./parse_op.ts";
