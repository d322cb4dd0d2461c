/**
 * Size limits of the document engine, configurable through the statesync config
 * (`limits` key, e.g. `AETHERFLOW_STATESYNC_LIMITS__MAX_CONTENT_BYTES=2097152`).
 * A document or operation over a size limit is refused with RESOURCE_EXHAUSTED, a
 * malformed one (too many components, name too long) with INVALID_ARGUMENT; the
 * message names the limit and its value.
 *
 * @example
 * ```ts
 * const limits = resolveLimits({ maxOpBytes: 8192 });
 * checkOpSize(op, limits); // throws AppError("RESOURCE_EXHAUSTED", "... maxOpBytes ...")
 * ```
 * @module
 */
import { z } from "zod";
import { AppError } from "../kernel/mod.ts";
import type { Json, Op } from "./model.ts";

/** The largest op the Deno KV store can keep in one value with its envelope. */
const KV_SAFE_OP_BYTES = 48 * 1024;

/** Zod schema of the limits (all optional, with defaults); use inside a service config. */
export const LimitsSchema = z.object({
  /** Largest document content, in bytes of its JSON text. */
  maxContentBytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024),
  /** Largest operation, in bytes of its JSON text. */
  maxOpBytes: z.number().int().min(256).max(KV_SAFE_OP_BYTES).default(32 * 1024),
  /** Most components in one operation. */
  maxComponentsPerOp: z.number().int().min(1).max(10_000).default(256),
  /** Longest document name, in characters. */
  maxNameLength: z.number().int().min(1).max(1024).default(256),
  /** Largest metadata map, in bytes of its JSON text. */
  maxMetadataBytes: z.number().int().min(0).max(16 * 1024).default(8 * 1024),
  /** Most users listed as editors plus viewers. */
  maxPrincipals: z.number().int().min(0).max(256).default(128),
  /** Longest user, session or client op id, in characters. */
  maxIdLength: z.number().int().min(8).max(128).default(128),
  /**
   * Most versions an operation's base may be behind the document. Each version behind is one
   * transform (and beyond the ops kept in memory, a read of history), so this bounds what one
   * operation can cost; one further behind is refused with FAILED_PRECONDITION (reload).
   */
  maxOpsBehind: z.number().int().min(1).max(1_000_000).default(1000),
}).strict();

/** Resolved size limits. */
export type Limits = z.output<typeof LimitsSchema>;

/** The default limits. */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze(LimitsSchema.parse({}));

/**
 * Defaults overlaid with `overrides`, validated.
 * @throws {RangeError} naming the limit when an override is out of range
 */
export function resolveLimits(overrides: Partial<Limits> = {}): Limits {
  const result = LimitsSchema.safeParse({ ...DEFAULT_LIMITS, ...overrides });
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new RangeError(`Invalid limit ${issue?.path.join(".")}: ${issue?.message}`);
  }
  return result.data;
}

const encoder = new TextEncoder();

/** Bytes of the UTF-8 JSON text of `value`. */
export function jsonBytes(value: unknown): number {
  const text = JSON.stringify(value) ?? "";
  // Fast path: ASCII text has one byte per UTF-16 unit.
  // deno-lint-ignore no-control-regex
  return /^[\x00-\x7f]*$/.test(text) ? text.length : encoder.encode(text).length;
}

/**
 * Refuse an op with too many components (INVALID_ARGUMENT) or too many bytes
 * (RESOURCE_EXHAUSTED). Returns the op's size in bytes.
 * @throws {AppError} naming `maxComponentsPerOp` or `maxOpBytes`
 */
export function checkOpSize(op: Op, limits: Limits): number {
  if (op.length > limits.maxComponentsPerOp) {
    throw new AppError(
      "INVALID_ARGUMENT",
      `Operation has ${op.length} components, over the limit maxComponentsPerOp=${limits.maxComponentsPerOp}`,
      { details: { limit: "maxComponentsPerOp", value: limits.maxComponentsPerOp } },
    );
  }
  const bytes = jsonBytes(op);
  if (bytes > limits.maxOpBytes) {
    throw new AppError(
      "RESOURCE_EXHAUSTED",
      `Operation is ${bytes} bytes, over the limit maxOpBytes=${limits.maxOpBytes}`,
      { details: { limit: "maxOpBytes", value: limits.maxOpBytes } },
    );
  }
  return bytes;
}

/**
 * Refuse content over `maxContentBytes` (RESOURCE_EXHAUSTED). Returns its size in bytes.
 * @throws {AppError} naming `maxContentBytes`
 */
export function checkContentSize(content: Json, limits: Limits): number {
  const bytes = jsonBytes(content);
  if (bytes > limits.maxContentBytes) {
    throw new AppError(
      "RESOURCE_EXHAUSTED",
      `Document content is ${bytes} bytes, over the limit maxContentBytes=${limits.maxContentBytes}`,
      { details: { limit: "maxContentBytes", value: limits.maxContentBytes } },
    );
  }
  return bytes;
}
