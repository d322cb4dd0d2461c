/**
 * Apply a json0-family op to a JSON document, purely.
 *
 * @example
 * ```ts
 * import { apply } from "./apply.ts";
 * const doc = apply({ title: "world" }, [
 *   { path: ["title"], action: { type: "text_insert", offset: 0, text: "hello " } },
 * ]);
 * // doc = { title: "hello world" }
 * ```
 * @module
 */
import { formatPath, isObject, kindOf, setKey } from "./_json.ts";
import { type OpLimits, readComponent } from "./_validate.ts";
import { OpError } from "./op_error.ts";
import type { Component, Json, Op } from "./types.ts";

/** Shape checks in apply: no size limits (parseOp enforces those), only sanity depth. */
const APPLY_LIMITS: OpLimits = {
  maxComponents: Number.POSITIVE_INFINITY,
  maxPathLength: Number.POSITIVE_INFINITY,
  maxDepth: 1000,
};

type JsonObject = { [key: string]: Json };

/** Per-call state: containers created by this call may be mutated in place. */
class Editor {
  #owned: Set<object>;
  readonly component: Component;
  readonly index: number;

  constructor(component: Component, index: number, owned: Set<object>) {
    this.component = component;
    this.index = index;
    this.#owned = owned;
  }

  fail(message: string): never {
    throw new OpError(
      "FAILED_PRECONDITION",
      `${message} (op[${this.index}] ${this.component.action.type} at ${
        formatPath(this.component.path)
      })`,
      this.component.path,
      { component: this.index },
    );
  }

  ownList(list: Json[]): Json[] {
    if (this.#owned.has(list)) return list;
    const copy = list.slice();
    this.#owned.add(copy);
    return copy;
  }

  ownObject(object: JsonObject): JsonObject {
    if (this.#owned.has(object)) return object;
    const copy: JsonObject = { ...object };
    this.#owned.add(copy);
    return copy;
  }

  /** Replace the node at `path[depth..]` below `node` by `edit(target)`; copies on the way. */
  editAt(node: Json, depth: number, end: number, edit: (target: Json) => Json): Json {
    if (depth === end) return edit(node);
    const path = this.component.path;
    const segment = path[depth]!;
    const where = formatPath(path.slice(0, depth));
    if (typeof segment === "number") {
      if (!Array.isArray(node)) {
        this.fail(
          `Path not found: index ${segment} needs a list at ${where}, found ${kindOf(node)}`,
        );
      }
      if (segment >= node.length) {
        this.fail(
          `Path not found: index ${segment} is out of range for the list at ${where} (length ${node.length})`,
        );
      }
      const child = this.editAt(node[segment]!, depth + 1, end, edit);
      const list = this.ownList(node);
      list[segment] = child;
      return list;
    }
    if (!isObject(node)) {
      this.fail(
        `Path not found: key "${segment}" needs an object at ${where}, found ${kindOf(node)}`,
      );
    }
    if (!Object.hasOwn(node, segment)) {
      this.fail(`Path not found: no key "${segment}" in the object at ${where}`);
    }
    const child = this.editAt(node[segment]!, depth + 1, end, edit);
    const object = this.ownObject(node);
    setKey(object, segment, child);
    return object;
  }
}

function checkIndex(editor: Editor, index: number, length: number, what: string): void {
  if (index > length) {
    editor.fail(`${what} ${index} is out of range for a list of length ${length}`);
  }
}

function applyComponent(root: Json, c: Component, editor: Editor): Json {
  const path = c.path;
  const action = c.action;
  const last = path.length - 1;
  switch (action.type) {
    case "set":
      if (path.length === 0) return action.value;
      return editor.editAt(root, 0, last, (parent) => {
        const key = path[last]!;
        if (typeof key === "number") {
          if (!Array.isArray(parent)) {
            editor.fail(`Type mismatch: index ${key} needs a list, found ${kindOf(parent)}`);
          }
          if (key >= parent.length) {
            editor.fail(
              `Index ${key} is out of range for a list of length ${parent.length} (use list_insert to add)`,
            );
          }
          const list = editor.ownList(parent);
          list[key] = action.value;
          return list;
        }
        if (!isObject(parent)) {
          editor.fail(`Type mismatch: key "${key}" needs an object, found ${kindOf(parent)}`);
        }
        const object = editor.ownObject(parent);
        setKey(object, key, action.value);
        return object;
      });
    case "delete":
      return editor.editAt(root, 0, last, (parent) => {
        const key = path[last]!;
        if (typeof key === "number") {
          if (!Array.isArray(parent)) {
            editor.fail(`Type mismatch: index ${key} needs a list, found ${kindOf(parent)}`);
          }
          if (key >= parent.length) {
            editor.fail(`Index ${key} is out of range for a list of length ${parent.length}`);
          }
          const list = editor.ownList(parent);
          list.splice(key, 1);
          return list;
        }
        if (!isObject(parent)) {
          editor.fail(`Type mismatch: key "${key}" needs an object, found ${kindOf(parent)}`);
        }
        if (!Object.hasOwn(parent, key)) editor.fail(`Path not found: no key "${key}" to delete`);
        const object = editor.ownObject(parent);
        delete object[key];
        return object;
      });
    case "text_insert":
    case "text_delete":
      return editor.editAt(root, 0, path.length, (target) => {
        if (typeof target !== "string") {
          editor.fail(`Type mismatch: text edit needs a string, found ${kindOf(target)}`);
        }
        if (action.type === "text_insert") {
          if (action.offset > target.length) {
            editor.fail(
              `Offset ${action.offset} is out of range for a string of length ${target.length}`,
            );
          }
          return target.slice(0, action.offset) + action.text + target.slice(action.offset);
        }
        if (action.offset + action.length > target.length) {
          editor.fail(
            `Range ${action.offset}..${
              action.offset + action.length
            } is out of range for a string of length ${target.length}`,
          );
        }
        return target.slice(0, action.offset) + target.slice(action.offset + action.length);
      });
    case "list_insert":
    case "list_delete":
    case "list_move":
      return editor.editAt(root, 0, path.length, (target) => {
        if (!Array.isArray(target)) {
          editor.fail(`Type mismatch: ${action.type} needs a list, found ${kindOf(target)}`);
        }
        if (action.type === "list_insert") {
          checkIndex(editor, action.index, target.length, "Index");
          const list = editor.ownList(target);
          list.splice(action.index, 0, action.value);
          return list;
        }
        if (action.type === "list_delete") {
          checkIndex(editor, action.index + 1, target.length, "Index");
          const list = editor.ownList(target);
          list.splice(action.index, 1);
          return list;
        }
        if (action.from >= target.length || action.to >= target.length) {
          editor.fail(
            `Move ${action.from} -> ${action.to} is out of range for a list of length ${target.length}`,
          );
        }
        if (action.from === action.to) return target;
        const list = editor.ownList(target);
        const [moved] = list.splice(action.from, 1);
        list.splice(action.to, 0, moved!);
        return list;
      });
    case "increment":
      return editor.editAt(root, 0, path.length, (target) => {
        if (typeof target !== "number") {
          editor.fail(`Type mismatch: increment needs a number, found ${kindOf(target)}`);
        }
        const result = target + action.delta;
        if (!Number.isFinite(result)) editor.fail(`Increment overflows the number ${target}`);
        return result;
      });
  }
}

/**
 * Apply `op` to `doc` and return the new document. Pure: `doc` and `op` are not modified (only
 * the containers on the edited paths are copied; the rest is shared with `doc`), and on error
 * nothing is applied. Components apply in order; a later one sees the earlier ones' results.
 *
 * Semantics per action (`path` names the node the action works on):
 * - `set`: replace the value at path (the root for `[]`); creates a missing object key; a list
 *   element must exist (use `list_insert` to add).
 * - `delete`: remove an existing object key or list element (later elements shift down).
 * - `text_insert` / `text_delete`: edit the string at path, offsets in UTF-16 code units.
 * - `list_insert` (0 ≤ index ≤ length), `list_delete` (index < length), `list_move` (both
 *   indexes < length; the element ends up at `to`): edit the list at path.
 * - `increment`: add delta to the number at path; the result must stay finite.
 *
 * @throws {OpError} INVALID_ARGUMENT when the op is malformed (see `parseOp`);
 * FAILED_PRECONDITION when it does not fit `doc`: a missing key or index on the path, a type
 * mismatch (text insert into a number), an index, offset or range out of bounds, an overflow.
 *
 * @example
 * ```ts
 * import { apply } from "./apply.ts";
 * apply({ n: 1 }, [{ path: ["n"], action: { type: "increment", delta: 2 } }]); // { n: 3 }
 * ```
 */
export function apply(doc: Json, op: Op): Json {
  if (!Array.isArray(op)) throw new OpError("INVALID_ARGUMENT", "op must be a list of components");
  const owned = new Set<object>();
  let root = doc;
  for (let i = 0; i < op.length; i++) {
    const component = readComponent(op[i], i, APPLY_LIMITS, false);
    root = applyComponent(root, component, new Editor(component, i, owned));
  }
  return root;
}
