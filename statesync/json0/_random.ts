/**
 * Private test support: a seeded PRNG and generators of random JSON documents and random ops
 * that are valid on a given document (all eight actions, nested paths).
 */
import { apply } from "./apply.ts";
import type { Component, Json, Op, Path } from "./types.ts";

/** A small, fast seeded PRNG (mulberry32). */
export class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** A random element of a non-empty list. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

const KEYS = ["a", "b", "c", "d"];
const CHARS = "xyzw";

/** A short random string over a tiny alphabet (so edits collide often). */
export function randomText(rng: Rng, max = 4): string {
  let s = "";
  const n = rng.int(max + 1);
  for (let i = 0; i < n; i++) s += CHARS[rng.int(CHARS.length)];
  return s;
}

/** A random JSON value at most `depth` containers deep. */
export function randomJson(rng: Rng, depth = 3): Json {
  const roll = rng.int(depth > 0 ? 8 : 5);
  switch (roll) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return rng.int(20) - 5;
    case 3:
    case 4:
      return randomText(rng);
    case 5:
    case 6: {
      const list: Json[] = [];
      const n = rng.int(6);
      for (let i = 0; i < n; i++) list.push(randomJson(rng, depth - 1));
      return list;
    }
    default: {
      const object: { [key: string]: Json } = {};
      for (const key of KEYS) if (rng.chance(0.5)) object[key] = randomJson(rng, depth - 1);
      return object;
    }
  }
}

/** A random document: usually an object or list at the root. */
export function randomDoc(rng: Rng): Json {
  if (rng.chance(0.1)) return randomJson(rng, 3);
  const object: { [key: string]: Json } = {};
  for (const key of KEYS) if (rng.chance(0.7)) object[key] = randomJson(rng, 3);
  return object;
}

function nodes(doc: Json): [Path, Json][] {
  const out: [Path, Json][] = [];
  const walk = (node: Json, path: Path) => {
    out.push([path, node]);
    if (Array.isArray(node)) node.forEach((child, i) => walk(child, [...path, i]));
    else if (typeof node === "object" && node !== null) {
      for (const key of Object.keys(node)) walk(node[key]!, [...path, key]);
    }
  };
  walk(doc, []);
  return out;
}

/** One random component valid on `doc`. */
export function randomComponent(rng: Rng, doc: Json): Component {
  const all = nodes(doc);
  const lists = all.filter(([, node]) => Array.isArray(node));
  const strings = all.filter(([, node]) => typeof node === "string");
  for (;;) {
    // Favour lists and strings so that list and text pairs meet often.
    const pool = lists.length > 0 && rng.chance(0.35)
      ? lists
      : strings.length > 0 && rng.chance(0.25)
      ? strings
      : all;
    const [path, node] = rng.pick(pool);
    const roll = rng.int(14);
    if (roll === 0) return { path, action: { type: "set", value: randomJson(rng, 2) } };
    if (roll === 1 && path.length > 0) return { path, action: { type: "delete" } };
    if (typeof node === "string") {
      if (node.length > 0 && rng.chance(0.5)) {
        const offset = rng.int(node.length);
        const length = 1 + rng.int(node.length - offset);
        return { path, action: { type: "text_delete", offset, length } };
      }
      const text = randomText(rng, 3) || "q";
      return { path, action: { type: "text_insert", offset: rng.int(node.length + 1), text } };
    }
    if (typeof node === "number") {
      return { path, action: { type: "increment", delta: rng.int(9) - 4 } };
    }
    if (Array.isArray(node)) {
      const r = rng.int(4);
      if (node.length === 0 || r === 0) {
        const value = randomJson(rng, 2);
        return { path, action: { type: "list_insert", index: rng.int(node.length + 1), value } };
      }
      if (r === 1) return { path, action: { type: "list_delete", index: rng.int(node.length) } };
      if (r === 2) {
        return {
          path,
          action: { type: "list_move", from: rng.int(node.length), to: rng.int(node.length) },
        };
      }
      return { path: [...path, rng.int(node.length)], action: { type: "delete" } };
    }
    if (typeof node === "object" && node !== null) {
      // Create or replace a key.
      return {
        path: [...path, rng.pick(KEYS)],
        action: { type: "set", value: randomJson(rng, 2) },
      };
    }
  }
}

/** A random op of 1..maxComponents components, each valid after the previous ones. */
export function randomOp(rng: Rng, doc: Json, maxComponents = 3): Op {
  const op: Op = [];
  let current = doc;
  const n = 1 + rng.int(maxComponents);
  for (let i = 0; i < n; i++) {
    const c = randomComponent(rng, current);
    op.push(c);
    current = apply(current, [c]);
  }
  return op;
}
