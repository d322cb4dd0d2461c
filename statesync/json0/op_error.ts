/**
 * The error thrown by {@linkcode apply}, {@linkcode parseOp} and friends.
 *
 * @example
 * ```ts
 * import { OpError } from "./op_error.ts";
 * try {
 *   throw new OpError("FAILED_PRECONDITION", "Path not found", ["title"]);
 * } catch (error) {
 *   if (error instanceof OpError) console.log(error.status, error.path);
 * }
 * ```
 * @module
 */
import type { Path } from "./types.ts";

/**
 * Why an op was refused:
 * - `INVALID_ARGUMENT`: the op itself is malformed (wrong types, negative index, unknown action).
 * - `FAILED_PRECONDITION`: the op is well formed but does not fit the document (missing path,
 *   type mismatch, index or offset out of range).
 */
export type OpErrorStatus = "INVALID_ARGUMENT" | "FAILED_PRECONDITION";

/** An op that cannot be parsed or applied; names the problem and the path. */
export class OpError extends Error {
  override name = "OpError";
  /** The gRPC status name callers should answer with. */
  status: OpErrorStatus;
  /** The path of the offending component (`[]` when unknown or the root). */
  path: Path;
  /** Index of the offending component in its op, when known. */
  component: number | undefined;

  /**
   * @param status INVALID_ARGUMENT for malformed ops, FAILED_PRECONDITION for ops that do not fit
   * @param message what went wrong, in sentence case
   * @param path the offending component's path
   * @param options `component`: its index in the op; `cause`: the underlying error
   */
  constructor(
    status: OpErrorStatus,
    message: string,
    path: Path = [],
    options: { component?: number; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.status = status;
    this.path = path;
    this.component = options.component;
  }
}
