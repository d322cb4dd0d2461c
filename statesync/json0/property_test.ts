import { deepStrictEqual } from "node:assert/strict";
import { apply } from "./apply.ts";
import { OpError } from "./op_error.ts";
import { parseOp } from "./parse_op.ts";
import { randomComponent, randomDoc, randomJson, randomOp, Rng } from "./_random.ts";
import { transform, transformWithCollisions } from "./transform.ts";
import type { Collision, Component, Json, Op, Path } from "./types.ts";

// Override with JSON0_SEED=<n> (and JSON0_CASES=<n>) to reproduce or widen a run.
const SEED = Number(Deno.env.get("JSON0_SEED") ?? 20261125);
const CASES = Number(Deno.env.get("JSON0_CASES") ?? 0);

function caseSeed(i: number): number {
  return (SEED + Math.imul(i, 0x9e3779b9)) >>> 0;
}

function describe(seed: number, what: Record<string, unknown>): string {
  return `seed ${seed} (rerun: JSON0_SEED=${seed} JSON0_CASES=1)\n${JSON.stringify(what)}`;
}

/** Run `check` on `count` seeded cases; the failing case's seed is in the message. */
function forCases(count: number, check: (rng: Rng, seed: number) => void): void {
  const n = CASES > 0 ? CASES : count;
  for (let i = 0; i < n; i++) {
    const seed = caseSeed(i);
    check(new Rng(seed), seed);
  }
}

function converge(doc: Json, a: Op, b: Op, seed: number): void {
  const context = { doc, a, b };
  let viaA: Json;
  let viaB: Json;
  let aPrime: Op = [];
  let bPrime: Op = [];
  try {
    bPrime = transform(b, a, "right");
    aPrime = transform(a, b, "left");
    viaA = apply(apply(doc, a), bPrime);
    viaB = apply(apply(doc, b), aPrime);
  } catch (error) {
    throw new Error(
      `Transformed op failed to apply: ${describe(seed, { ...context, aPrime, bPrime })}`,
      {
        cause: error,
      },
    );
  }
  deepStrictEqual(viaA, viaB, `Diverged: ${describe(seed, { ...context, aPrime, bPrime })}`);
}

Deno.test("transform() converges for random concurrent op pairs on random documents", () => {
  forCases(20000, (rng, seed) => {
    const doc = randomDoc(rng);
    const a = randomOp(rng, doc, 1 + rng.int(3));
    const b = randomOp(rng, doc, 1 + rng.int(3));
    converge(doc, a, b, seed);
  });
});

Deno.test("transform() converges for random pairs of long multi-component ops", () => {
  forCases(1500, (rng, seed) => {
    const doc = randomDoc(rng);
    converge(doc, randomOp(rng, doc, 10), randomOp(rng, doc, 10), seed);
  });
});

Deno.test("transform() converges for an op against a sequence of concurrent ops", () => {
  forCases(5000, (rng, seed) => {
    const doc = randomDoc(rng);
    const a = randomOp(rng, doc, 2);
    // b1..bn applied one after another, as the server history does.
    const history: Op[] = [];
    let current = doc;
    const n = 1 + rng.int(5);
    for (let i = 0; i < n; i++) {
      const b = randomOp(rng, current, 2);
      history.push(b);
      current = apply(current, b);
    }
    // Server flow: rebase `a` past each history op in turn.
    let rebased = a;
    for (const b of history) rebased = transform(rebased, b, "right");
    const all = history.flat();
    const context = { doc, a, history, rebased };
    let viaHistory: Json;
    let viaA: Json;
    try {
      viaHistory = apply(current, rebased);
      viaA = apply(apply(doc, a), transform(all, a, "left"));
    } catch (error) {
      throw new Error(`Transformed op failed to apply: ${describe(seed, context)}`, {
        cause: error,
      });
    }
    deepStrictEqual(viaHistory, viaA, `Diverged: ${describe(seed, context)}`);
  });
});

Deno.test("transformWithCollisions() rebases exactly like transform() with the winner as left", () => {
  forCases(2000, (rng, seed) => {
    const doc = randomDoc(rng);
    const incoming = randomOp(rng, doc, 2);
    const applied = randomOp(rng, doc, 2);
    const incomingWins = rng.chance(0.5);
    const { op } = transformWithCollisions(incoming, applied, incomingWins);
    deepStrictEqual(
      op,
      transform(incoming, applied, incomingWins ? "left" : "right"),
      describe(seed, { doc, incoming, applied, incomingWins }),
    );
  });
});

/** The node a set/delete/list_delete writes, or undefined for other actions. */
function writtenNode(c: Component): Path | undefined {
  if (c.action.type === "list_delete") return [...c.path, c.action.index];
  return c.action.type === "set" || c.action.type === "delete" ? c.path : undefined;
}

Deno.test("transformWithCollisions() reports collisions exactly for set/set and set/delete of one path", () => {
  let reported = 0;
  forCases(20000, (rng, seed) => {
    const doc = randomDoc(rng);
    const incoming = randomComponent(rng, doc);
    const applied = rng.chance(0.5) ? randomComponent(rng, doc) : structuredClone(incoming);
    if (rng.chance(0.2) && applied.action.type === "set") applied.action.value = rng.int(3);
    const incomingWins = rng.chance(0.5);
    const expected: Collision[] = [];
    const node = writtenNode(incoming);
    const otherNode = writtenNode(applied);
    if (
      node !== undefined && otherNode !== undefined &&
      JSON.stringify(node) === JSON.stringify(otherNode)
    ) {
      const incomingValue = incoming.action.type === "set" ? incoming.action.value : undefined;
      const appliedValue = applied.action.type === "set" ? applied.action.value : undefined;
      const bothDelete = incomingValue === undefined && appliedValue === undefined;
      const sameValue = incomingValue !== undefined && appliedValue !== undefined &&
        JSON.stringify(incomingValue) === JSON.stringify(appliedValue);
      if (!bothDelete && !sameValue) expected.push({ path: node, appliedValue, incomingValue });
    }
    const { collisions } = transformWithCollisions([incoming], [applied], incomingWins);
    reported += collisions.length;
    deepStrictEqual(collisions, expected, describe(seed, { doc, incoming, applied, incomingWins }));
  });
  if (CASES === 0 && reported < 500) throw new Error(`Too few collisions exercised: ${reported}`);
});

/** Something that may or may not be a sensible field value. */
function junk(rng: Rng): unknown {
  return rng.pick<unknown>([
    0,
    1,
    2,
    7,
    -1,
    0.5,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    "a",
    "",
    null,
    undefined,
    true,
    [],
    {},
    randomJson(rng, 1),
  ]);
}

Deno.test("apply() and parseOp() refuse random malformed or ill-fitting ops only with OpError, changing nothing", () => {
  const types = [
    "set",
    "delete",
    "text_insert",
    "text_delete",
    "list_insert",
    "list_delete",
    "list_move",
    "increment",
    "nope",
  ];
  let refused = 0;
  forCases(5000, (rng, seed) => {
    const doc = randomDoc(rng);
    const before = structuredClone(doc);
    const raw: unknown[] = [];
    const n = 1 + rng.int(3);
    for (let i = 0; i < n; i++) {
      if (rng.chance(0.5)) {
        raw.push(randomComponent(rng, doc));
        continue;
      }
      const path: unknown[] = [];
      const depth = rng.int(4);
      for (let d = 0; d < depth; d++) {
        path.push(rng.chance(0.8) ? rng.pick(["a", "b", 0, 1, 3]) : junk(rng));
      }
      raw.push({
        path: rng.chance(0.95) ? path : junk(rng),
        action: {
          type: rng.pick(types),
          value: junk(rng),
          offset: junk(rng),
          length: junk(rng),
          text: rng.chance(0.7) ? "t" : junk(rng),
          index: junk(rng),
          from: junk(rng),
          to: junk(rng),
          delta: junk(rng),
        },
      });
    }
    for (const run of [() => apply(doc, parseOp(raw)), () => apply(doc, raw as Op)]) {
      try {
        run();
      } catch (error) {
        if (!(error instanceof OpError)) {
          throw new Error(`Unexpected error: ${describe(seed, { doc, raw })}`, { cause: error });
        }
        refused++;
      }
      deepStrictEqual(doc, before, `Document changed: ${describe(seed, { doc, raw })}`);
    }
  });
  if (CASES === 0 && refused < 1000) throw new Error(`Too few refusals exercised: ${refused}`);
});
