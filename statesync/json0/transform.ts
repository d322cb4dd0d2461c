/**
 * Operational transformation for json0-family ops: rebase an op so that it applies after a
 * concurrent one, with deterministic tie-breaks, and report genuine collisions.
 *
 * @example
 * ```ts
 * import { transform } from "./transform.ts";
 * import type { Op } from "./types.ts";
 * const mine: Op = [{ path: ["t"], action: { type: "text_insert", offset: 5, text: "!" } }];
 * const theirs: Op = [{ path: ["t"], action: { type: "text_insert", offset: 0, text: "Hi " } }];
 * transform(mine, theirs, "right"); // offset 8
 * ```
 * @module
 */
import { isPrefix, jsonEquals, pathEquals } from "./_json.ts";
import type { Action, Collision, Component, Json, Op, Path, Side } from "./types.ts";

type Collect = (incoming: Component, applied: Component, path: Path) => void;

/** True for actions that replace or remove the node they name (their "node"). */
function isNodeLevel(action: Action): boolean {
  return action.type === "set" || action.type === "delete" || action.type === "list_delete";
}

/** The node a node-level component replaces or removes. */
function nodeOf(c: Component): Path {
  return c.action.type === "list_delete" ? [...c.path, c.action.index] : c.path;
}

/**
 * For components that change the indexes of a list's elements: the list's path.
 * (`delete` of a list element is a list delete.)
 */
function structuralList(c: Component): Path | undefined {
  switch (c.action.type) {
    case "list_insert":
    case "list_delete":
    case "list_move":
      return c.path;
    case "delete":
      return typeof c.path[c.path.length - 1] === "number" ? c.path.slice(0, -1) : undefined;
    default:
      return undefined;
  }
}

/** Where the element at index `j` of the list ends up after `a`; undefined when `a` removed it. */
function mapIndex(j: number, a: Component): number | undefined {
  const action = a.action;
  switch (action.type) {
    case "list_insert":
      return j >= action.index ? j + 1 : j;
    case "list_move": {
      if (j === action.from) return action.to;
      const without = j > action.from ? j - 1 : j;
      return without >= action.to ? without + 1 : without;
    }
    case "list_delete":
    case "delete": {
      const i = action.type === "list_delete" ? action.index : a.path[a.path.length - 1] as number;
      if (j === i) return undefined;
      return j > i ? j - 1 : j;
    }
    default:
      return j;
  }
}

function withPath(c: Component, path: Path): Component {
  return { path, action: c.action };
}

function at(c: Component, action: Action): Component {
  return { path: c.path, action };
}

function move(c: Component, from: number, to: number): Component[] {
  return from === to ? [] : [at(c, { type: "list_move", from, to })];
}

/** A list op `c` on the same list as the structural op `a`. */
function transformListAction(c: Component, a: Component, cLeft: boolean): Component[] {
  const ca = c.action;
  const aa = a.action;
  switch (ca.type) {
    case "list_insert": {
      let index = ca.index;
      if (aa.type === "list_insert") {
        if (index > aa.index || (index === aa.index && !cLeft)) index++;
      } else if (aa.type === "list_move") {
        const gap = index <= aa.from ? index : index - 1;
        index = gap < aa.to || (gap === aa.to && cLeft) ? gap : gap + 1;
      } else {
        const removed = mapRemoved(a);
        if (index > removed) index--;
      }
      return [at(c, { ...ca, index })];
    }
    case "list_delete": {
      const index = mapIndex(ca.index, a);
      return index === undefined ? [] : [at(c, { type: "list_delete", index })];
    }
    case "list_move": {
      const { from, to } = ca;
      if (aa.type === "list_insert") {
        const gap = aa.index <= from ? aa.index : aa.index - 1;
        const newTo = to < gap || (to === gap && cLeft) ? to : to + 1;
        return move(c, from >= aa.index ? from + 1 : from, newTo);
      }
      if (aa.type === "list_move") {
        if (aa.from === from) return cLeft ? move(c, aa.to, to) : [];
        // Both moved elements (ours X, theirs W) re-enter the list without either of them.
        const x = from > aa.from ? from - 1 : from; // X's index in the list without W
        const w = aa.from > from ? aa.from - 1 : aa.from; // W's index in the list without X
        const gapX = to <= w ? to : to - 1;
        const gapW = aa.to <= x ? aa.to : aa.to - 1;
        const newTo = gapX < gapW || (gapX === gapW && cLeft) ? gapX : gapX + 1;
        return move(c, mapIndex(from, a)!, newTo);
      }
      const removed = mapRemoved(a);
      if (removed === from) return [];
      const z = removed > from ? removed - 1 : removed; // its index in the list without ours
      return move(c, mapIndex(from, a)!, to <= z ? to : to - 1);
    }
    default:
      return [c];
  }
}

/** Index removed by a list delete (`list_delete` or `delete` of an element). */
function mapRemoved(a: Component): number {
  return a.action.type === "list_delete" ? a.action.index : a.path[a.path.length - 1] as number;
}

/** Text op `c` against text op `a` on the same string. */
function transformText(c: Component, a: Component, cLeft: boolean): Component[] {
  const ca = c.action;
  const aa = a.action;
  if (ca.type === "text_insert") {
    let offset = ca.offset;
    if (aa.type === "text_insert") {
      if (offset > aa.offset || (offset === aa.offset && !cLeft)) offset += aa.text.length;
    } else if (aa.type === "text_delete") {
      if (offset >= aa.offset + aa.length) offset -= aa.length;
      else if (offset > aa.offset) offset = aa.offset;
    }
    return [at(c, { ...ca, offset })];
  }
  if (ca.type === "text_delete") {
    const start = ca.offset;
    const end = ca.offset + ca.length;
    if (aa.type === "text_insert") {
      const size = aa.text.length;
      if (aa.offset <= start) return [at(c, { ...ca, offset: start + size })];
      if (aa.offset >= end) return [c];
      const head = aa.offset - start;
      return [
        at(c, { type: "text_delete", offset: start, length: head }),
        at(c, { type: "text_delete", offset: start + size, length: ca.length - head }),
      ];
    }
    if (aa.type === "text_delete") {
      const aEnd = aa.offset + aa.length;
      const overlap = Math.max(0, Math.min(end, aEnd) - Math.max(start, aa.offset));
      const length = ca.length - overlap;
      if (length === 0) return [];
      const offset = start <= aa.offset ? start : start >= aEnd ? start - aa.length : aa.offset;
      return [at(c, { type: "text_delete", offset, length })];
    }
  }
  return [c];
}

/** Rebase component `c` so that it applies after component `a` (both valid on one document). */
function transformComponent(
  c: Component,
  a: Component,
  cLeft: boolean,
  collect: Collect | undefined,
): Component[] {
  const ca = c.action;
  const aa = a.action;

  // 1. `a` replaced or removed a node: edits inside it are dropped; the same node ties.
  if (isNodeLevel(aa)) {
    const removedNode = nodeOf(a);
    if (isNodeLevel(ca)) {
      const node = nodeOf(c);
      if (pathEquals(node, removedNode)) {
        if (collect !== undefined && (ca.type === "set" || aa.type === "set")) {
          const incoming = ca.type === "set" ? ca.value : undefined;
          const applied = aa.type === "set" ? aa.value : undefined;
          if (!(incoming !== undefined && applied !== undefined && jsonEquals(incoming, applied))) {
            collect(c, a, node);
          }
        }
        if (ca.type === "set") {
          if (!cLeft) return [];
          const key = node[node.length - 1];
          if (aa.type !== "set" && typeof key === "number") {
            // The element is gone: our replacement comes back as an insert where it was.
            return [{
              path: node.slice(0, -1),
              action: { type: "list_insert", index: key, value: ca.value },
            }];
          }
          return [c];
        }
        // c removes the node: already gone, or replaced by `a` (then the left side wins).
        return aa.type === "set" && cLeft ? [c] : [];
      }
      if (node.length > removedNode.length && isPrefix(removedNode, node)) return [];
    } else if (isPrefix(removedNode, c.path)) {
      return [];
    }
  }

  // 2. `a` shifted the elements of a list: fix indexes in our path and our list action.
  const list = structuralList(a);
  if (list !== undefined) {
    if (c.path.length > list.length && isPrefix(list, c.path)) {
      const j = c.path[list.length];
      if (typeof j !== "number") return [c];
      const index = mapIndex(j, a);
      if (index === undefined) return [];
      if (index === j) return [c];
      const path = c.path.slice();
      path[list.length] = index;
      return [withPath(c, path)];
    }
    if (pathEquals(c.path, list)) return transformListAction(c, a, cLeft);
    return [c];
  }

  // 3. Text edits of one string shift each other; increments commute.
  if (
    (aa.type === "text_insert" || aa.type === "text_delete") &&
    (ca.type === "text_insert" || ca.type === "text_delete") && pathEquals(c.path, a.path)
  ) {
    return transformText(c, a, cLeft);
  }
  return [c];
}

interface Context {
  /** Whether the first op of `transformX` is the left (winning) side. */
  firstLeft: boolean;
  /** Collision sink; `firstIncoming` says which op is the incoming one. */
  collect?: (collision: Collision) => void;
}

/** Transform two single components against each other: returns [first', second']. */
function pair(first: Component, second: Component, ctx: Context): [Op, Op] {
  const collect: Collect | undefined = ctx.collect === undefined
    ? undefined
    : (incoming, applied, path) =>
      ctx.collect!({
        path,
        appliedValue: valueOf(applied.action),
        incomingValue: valueOf(incoming.action),
      });
  return [
    transformComponent(first, second, ctx.firstLeft, collect),
    transformComponent(second, first, !ctx.firstLeft, undefined),
  ];
}

/** `first` (usually one component, more after a split) against one component. */
function againstComponent(first: Op, second: Component, ctx: Context): [Op, Op] {
  let rest: Op = [second];
  const out: Op = [];
  for (const c of first) {
    let rebased: Op;
    if (rest.length === 1) [rebased, rest] = pair(c, rest[0]!, ctx);
    else [rebased, rest] = componentAgainst(c, rest, ctx);
    for (const r of rebased) out.push(r);
  }
  return [out, rest];
}

/** One component of the first op against the whole second op. */
function componentAgainst(first: Component, second: Op, ctx: Context): [Op, Op] {
  let current: Op = [first];
  const out: Op = [];
  for (const s of second) {
    if (current.length === 0) {
      out.push(s);
      continue;
    }
    let rebased: Op;
    [current, rebased] = againstComponent(current, s, ctx);
    for (const r of rebased) out.push(r);
  }
  return [current, out];
}

/**
 * Transform two concurrent ops against each other: returns [first', second'], where first'
 * applies after second and second' after first. O(|first| · |second|) component pairs.
 */
function transformX(first: Op, second: Op, ctx: Context): [Op, Op] {
  if (first.length === 1 && second.length === 1) return pair(first[0]!, second[0]!, ctx);
  let rest = second;
  const out: Op = [];
  for (const c of first) {
    let rebased: Op;
    [rebased, rest] = componentAgainst(c, rest, ctx);
    for (const r of rebased) out.push(r);
  }
  return [out, rest];
}

function valueOf(action: Action): Json | undefined {
  return action.type === "set" ? action.value : undefined;
}

function checkOps(op: Op, other: Op): void {
  if (!Array.isArray(op) || !Array.isArray(other)) {
    throw new TypeError("Cannot transform: ops must be lists of components");
  }
}

/**
 * Rebase `op` so that it applies after `against`, where both were made on the same document
 * version (both must be valid there, e.g. checked by `apply`). Convergence holds:
 * `apply(apply(S, a), transform(b, a, "right"))` equals
 * `apply(apply(S, b), transform(a, b, "left"))`. Multi-component ops are transformed component
 * by component (folding), so `against` may be a whole sequence of ops concatenated.
 *
 * Tie-breaks (`side === "left"` means `op` wins):
 * - two list inserts (or two text inserts) at one position: left goes first;
 * - two sets of one path: left wins; set vs delete of one path: left wins (a set of a deleted
 *   list element comes back as a list insert);
 * - two moves of one element: left's destination wins; two deletes of one element: once;
 * - an edit inside a subtree the other op replaced or deleted is dropped (so set beats
 *   increment, text or list edits of the same node regardless of side);
 * - overlapping text deletes shrink; a text delete around a concurrent insert keeps the insert;
 * - increments commute.
 *
 * @throws {TypeError} when `side` is not "left" or "right" or an op is not a list
 *
 * @example
 * ```ts
 * import { transform } from "./transform.ts";
 * transform(
 *   [{ path: ["items"], action: { type: "list_insert", index: 0, value: "b" } }],
 *   [{ path: ["items"], action: { type: "list_insert", index: 0, value: "a" } }],
 *   "right",
 * ); // index 1: the left op's item goes first
 * ```
 */
export function transform(op: Op, against: Op, side: Side): Op {
  if (side !== "left" && side !== "right") {
    throw new TypeError(`Cannot transform: side must be "left" or "right", got ${String(side)}`);
  }
  checkOps(op, against);
  return transformX(op, against, { firstLeft: side === "left" })[0];
}

/**
 * Like {@linkcode transform} for an `incoming` op against an already `applied` one, also
 * reporting genuine collisions: two sets of the same path with different values, and a set vs a
 * delete of the same path. `incomingWins` makes the incoming op the left side (last writer
 * wins, "lww"); otherwise the applied op wins ("merge"). Collision paths are in the coordinates
 * of the document after `applied` (as far as it got when the pair met).
 *
 * @example
 * ```ts
 * import { transformWithCollisions } from "./transform.ts";
 * const { op, collisions } = transformWithCollisions(
 *   [{ path: ["color"], action: { type: "set", value: "red" } }],
 *   [{ path: ["color"], action: { type: "set", value: "blue" } }],
 *   false,
 * ); // op = [], collisions = [{ path: ["color"], appliedValue: "blue", incomingValue: "red" }]
 * ```
 */
export function transformWithCollisions(
  incoming: Op,
  applied: Op,
  incomingWins: boolean,
): { op: Op; collisions: Collision[] } {
  checkOps(incoming, applied);
  const collisions: Collision[] = [];
  if (incoming.length === 1 && applied.length === 1) {
    // The common case: only the incoming side is wanted, so the applied side (which
    // `transformX` would also rebase) is not computed.
    const op = transformComponent(
      incoming[0]!,
      applied[0]!,
      incomingWins,
      (c, a, path) =>
        collisions.push({
          path,
          appliedValue: valueOf(a.action),
          incomingValue: valueOf(c.action),
        }),
    );
    return { op, collisions };
  }
  const [op] = transformX(incoming, applied, {
    firstLeft: incomingWins,
    collect: (collision) => collisions.push(collision),
  });
  return { op, collisions };
}
