/** Private: shape validation shared by parseOp (untrusted input) and apply (typed input). */
import { OpError } from "./op_error.ts";
import { setKey } from "./_json.ts";
import type { Action, Component, Json, Path } from "./types.ts";

/** Size limits for ops read from untrusted input. */
export interface OpLimits {
  /** Most components in one op. */
  maxComponents: number;
  /** Most segments in one path. */
  maxPathLength: number;
  /** Deepest nesting of a value carried by `set` or `list_insert`. */
  maxDepth: number;
}

/** The limits used when none are given. */
export const DEFAULT_OP_LIMITS: Readonly<OpLimits> = Object.freeze({
  maxComponents: 1000,
  maxPathLength: 64,
  maxDepth: 64,
});

const ACTION_TYPES = new Set<string>([
  "set",
  "delete",
  "text_insert",
  "text_delete",
  "list_insert",
  "list_delete",
  "list_move",
  "increment",
]);

function invalid(message: string, path: Path, component: number): OpError {
  return new OpError("INVALID_ARGUMENT", message, path, { component });
}

function readPath(raw: unknown, field: string, limits: OpLimits, component: number): Path {
  if (!Array.isArray(raw)) throw invalid(`${field} must be a list`, [], component);
  if (raw.length > limits.maxPathLength) {
    throw invalid(
      `${field} is too long: ${raw.length} segments, limit ${limits.maxPathLength}`,
      [],
      component,
    );
  }
  for (let i = 0; i < raw.length; i++) {
    const segment: unknown = raw[i];
    if (typeof segment === "string") continue;
    if (typeof segment === "number" && Number.isSafeInteger(segment) && segment >= 0) continue;
    throw invalid(
      `${field}[${i}] must be an object key (string) or a list index (non-negative integer)`,
      [],
      component,
    );
  }
  return raw as Path;
}

function readIndex(raw: unknown, field: string, path: Path, component: number): number {
  if (typeof raw !== "number" || !Number.isSafeInteger(raw) || raw < 0) {
    throw invalid(`${field} must be a non-negative integer`, path, component);
  }
  return raw;
}

/**
 * Check that `raw` is a JSON value (finite numbers, plain objects, no cycles deeper than
 * `maxDepth`); returns it, or a fresh copy when `copy` is set.
 */
export function readJson(
  raw: unknown,
  field: string,
  depth: number,
  limits: OpLimits,
  copy: boolean,
  path: Path,
  component: number,
): Json {
  switch (typeof raw) {
    case "string":
    case "boolean":
      return raw;
    case "number":
      if (!Number.isFinite(raw)) throw invalid(`${field} must be a finite number`, path, component);
      return raw;
    case "object": {
      if (raw === null) return null;
      if (depth >= limits.maxDepth) {
        throw invalid(`${field} is nested too deeply (limit ${limits.maxDepth})`, path, component);
      }
      if (Array.isArray(raw)) {
        const out: Json[] = copy ? new Array(raw.length) : raw;
        for (let i = 0; i < raw.length; i++) {
          const item = readJson(raw[i], `${field}[${i}]`, depth + 1, limits, copy, path, component);
          if (copy) out[i] = item;
        }
        return out;
      }
      const proto = Object.getPrototypeOf(raw);
      if (proto !== Object.prototype && proto !== null) {
        throw invalid(`${field} must be a plain JSON object`, path, component);
      }
      const source = raw as Record<string, unknown>;
      const out: { [key: string]: Json } = copy ? {} : source as { [key: string]: Json };
      for (const key of Object.keys(source)) {
        const item = readJson(
          source[key],
          `${field}.${key}`,
          depth + 1,
          limits,
          copy,
          path,
          component,
        );
        if (copy) setKey(out, key, item);
      }
      return out;
    }
    default:
      throw invalid(`${field} must be a JSON value, not ${typeof raw}`, path, component);
  }
}

/**
 * Validate one component's shape. With `copy`, returns a fresh component holding only the known
 * fields; otherwise returns `raw` itself.
 */
export function readComponent(
  raw: unknown,
  index: number,
  limits: OpLimits,
  copy: boolean,
): Component {
  const field = `op[${index}]`;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw invalid(`${field} must be an object with path and action`, [], index);
  }
  const source = raw as { path?: unknown; action?: unknown };
  const path = readPath(source.path, `${field}.path`, limits, index);
  const rawAction = source.action;
  if (typeof rawAction !== "object" || rawAction === null || Array.isArray(rawAction)) {
    throw invalid(`${field}.action must be an object`, path, index);
  }
  const a = rawAction as Record<string, unknown>;
  const type = a.type;
  if (typeof type !== "string" || !ACTION_TYPES.has(type)) {
    throw invalid(
      `${field}.action.type must be one of ${[...ACTION_TYPES].join(", ")}`,
      path,
      index,
    );
  }
  const f = `${field}.action`;
  let action: Action;
  switch (type) {
    case "set":
      if (!("value" in a)) throw invalid(`${f}.value is required`, path, index);
      action = { type, value: readJson(a.value, `${f}.value`, 0, limits, copy, path, index) };
      break;
    case "delete":
      if (path.length === 0) throw invalid("Cannot delete the document root", path, index);
      action = { type };
      break;
    case "text_insert": {
      const offset = readIndex(a.offset, `${f}.offset`, path, index);
      if (typeof a.text !== "string" || a.text.length === 0) {
        throw invalid(`${f}.text must be a non-empty string`, path, index);
      }
      action = { type, offset, text: a.text };
      break;
    }
    case "text_delete": {
      const offset = readIndex(a.offset, `${f}.offset`, path, index);
      const length = readIndex(a.length, `${f}.length`, path, index);
      if (length === 0) throw invalid(`${f}.length must be positive`, path, index);
      action = { type, offset, length };
      break;
    }
    case "list_insert": {
      const at = readIndex(a.index, `${f}.index`, path, index);
      if (!("value" in a)) throw invalid(`${f}.value is required`, path, index);
      action = {
        type,
        index: at,
        value: readJson(a.value, `${f}.value`, 0, limits, copy, path, index),
      };
      break;
    }
    case "list_delete":
      action = { type, index: readIndex(a.index, `${f}.index`, path, index) };
      break;
    case "list_move":
      action = {
        type,
        from: readIndex(a.from, `${f}.from`, path, index),
        to: readIndex(a.to, `${f}.to`, path, index),
      };
      break;
    default: {
      if (typeof a.delta !== "number" || !Number.isFinite(a.delta)) {
        throw invalid(`${f}.delta must be a finite number`, path, index);
      }
      action = { type: "increment", delta: a.delta };
    }
  }
  if (!copy) return raw as Component;
  return { path: [...path], action };
}
