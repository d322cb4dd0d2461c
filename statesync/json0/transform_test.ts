import { deepStrictEqual, throws } from "node:assert/strict";
import { apply } from "./apply.ts";
import { transform, transformWithCollisions } from "./transform.ts";
import { del, inc, ld, li, lm, set, td, ti } from "./_ops_test_util.ts";
import type { Component, Json, Op, Side } from "./types.ts";

const DOC: Json = {
  t: "abcdef",
  n: 5,
  l: ["a", "b", "c", "d", "e"],
  o: { k: 1, s: "xy" },
  rows: [{ s: "pq", n: 1 }, { s: "rs", n: 2 }, { s: "uv", n: 3 }],
};

/**
 * Check `transform([c], [a], side)` against the expected result, and that the pair converges on
 * DOC with `a` on the other side.
 */
function rebase(c: Component, a: Component, side: Side, expected: Op, doc: Json = DOC): void {
  const actual = transform([c], [a], side);
  deepStrictEqual(
    actual,
    expected,
    `transform(${JSON.stringify(c)}, ${JSON.stringify(a)}, ${side})`,
  );
  const other: Side = side === "left" ? "right" : "left";
  deepStrictEqual(
    apply(apply(doc, [a]), actual),
    apply(apply(doc, [c]), transform([a], [c], other)),
    "the pair must converge",
  );
}

/** Both sides give the same result. */
function rebaseEither(c: Component, a: Component, expected: Op): void {
  rebase(c, a, "left", expected);
  rebase(c, a, "right", expected);
}

Deno.test("transform() text_insert vs text_insert: shifts past earlier inserts, left goes first on a tie", () => {
  rebaseEither(ti(["t"], 1, "X"), ti(["t"], 4, "YY"), [ti(["t"], 1, "X")]);
  rebaseEither(ti(["t"], 4, "X"), ti(["t"], 1, "YY"), [ti(["t"], 6, "X")]);
  rebase(ti(["t"], 2, "X"), ti(["t"], 2, "Y"), "left", [ti(["t"], 2, "X")]);
  rebase(ti(["t"], 2, "X"), ti(["t"], 2, "Y"), "right", [ti(["t"], 3, "X")]);
  deepStrictEqual(
    apply(
      apply(DOC, [ti(["t"], 2, "Y")]),
      transform([ti(["t"], 2, "X")], [ti(["t"], 2, "Y")], "left"),
    ),
    { ...DOC as object, t: "abXYcdef" },
  );
});

Deno.test("transform() text_insert vs text_delete: shifts back, or lands at the start of the deleted range", () => {
  rebaseEither(ti(["t"], 1, "X"), td(["t"], 2, 2), [ti(["t"], 1, "X")]);
  rebaseEither(ti(["t"], 5, "X"), td(["t"], 2, 2), [ti(["t"], 3, "X")]);
  rebaseEither(ti(["t"], 3, "X"), td(["t"], 2, 2), [ti(["t"], 2, "X")]);
  rebaseEither(ti(["t"], 2, "X"), td(["t"], 2, 2), [ti(["t"], 2, "X")]);
  rebaseEither(ti(["t"], 4, "X"), td(["t"], 2, 2), [ti(["t"], 2, "X")]);
});

Deno.test("transform() text_delete vs text_insert: shifts, or splits around the inserted text", () => {
  rebaseEither(td(["t"], 1, 3), ti(["t"], 0, "YY"), [td(["t"], 3, 3)]);
  rebaseEither(td(["t"], 1, 3), ti(["t"], 1, "YY"), [td(["t"], 3, 3)]);
  rebaseEither(td(["t"], 1, 3), ti(["t"], 4, "Y"), [td(["t"], 1, 3)]);
  rebaseEither(td(["t"], 1, 3), ti(["t"], 2, "YY"), [td(["t"], 1, 1), td(["t"], 3, 2)]);
  deepStrictEqual(
    apply(
      apply(DOC, [ti(["t"], 2, "YY")]),
      transform([td(["t"], 1, 3)], [ti(["t"], 2, "YY")], "left"),
    ),
    { ...DOC as object, t: "aYYef" },
  );
});

Deno.test("transform() text_delete vs text_delete: overlapping deletes shrink, contained ones vanish", () => {
  rebaseEither(td(["t"], 1, 3), td(["t"], 2, 3), [td(["t"], 1, 1)]);
  rebaseEither(td(["t"], 2, 3), td(["t"], 1, 3), [td(["t"], 1, 1)]);
  rebaseEither(td(["t"], 2, 2), td(["t"], 1, 4), []);
  rebaseEither(td(["t"], 2, 2), td(["t"], 2, 2), []);
  rebaseEither(td(["t"], 4, 2), td(["t"], 0, 2), [td(["t"], 2, 2)]);
  rebaseEither(td(["t"], 0, 2), td(["t"], 3, 2), [td(["t"], 0, 2)]);
  rebaseEither(td(["t"], 0, 6), td(["t"], 2, 1), [td(["t"], 0, 5)]);
});

Deno.test("transform() text edits of a replaced or deleted string are dropped", () => {
  rebaseEither(ti(["t"], 1, "X"), set(["t"], "new"), []);
  rebaseEither(td(["t"], 1, 1), set(["t"], "new"), []);
  rebaseEither(ti(["o", "s"], 0, "X"), del(["o", "s"]), []);
  rebaseEither(td(["o", "s"], 0, 1), del(["o"]), []);
  rebaseEither(ti(["rows", 0, "s"], 0, "X"), ld(["rows"], 0), []);
  rebaseEither(ti(["rows", 0, "s"], 0, "X"), set(["rows", 0], {}), []);
});

Deno.test("transform() edits below a list element follow list inserts, deletes and moves", () => {
  rebaseEither(ti(["rows", 1, "s"], 0, "X"), li(["rows"], 0, {}), [ti(["rows", 2, "s"], 0, "X")]);
  rebaseEither(ti(["rows", 1, "s"], 0, "X"), li(["rows"], 1, {}), [ti(["rows", 2, "s"], 0, "X")]);
  rebaseEither(ti(["rows", 1, "s"], 0, "X"), li(["rows"], 2, {}), [ti(["rows", 1, "s"], 0, "X")]);
  rebaseEither(td(["rows", 2, "s"], 0, 1), ld(["rows"], 0), [td(["rows", 1, "s"], 0, 1)]);
  rebaseEither(td(["rows", 2, "s"], 0, 1), del(["rows", 1]), [td(["rows", 1, "s"], 0, 1)]);
  rebaseEither(inc(["rows", 1, "n"], 1), lm(["rows"], 1, 0), [inc(["rows", 0, "n"], 1)]);
  rebaseEither(inc(["rows", 0, "n"], 1), lm(["rows"], 1, 0), [inc(["rows", 1, "n"], 1)]);
  rebaseEither(inc(["rows", 2, "n"], 1), lm(["rows"], 0, 1), [inc(["rows", 2, "n"], 1)]);
  rebaseEither(set(["rows", 2, "s"], "z"), lm(["rows"], 0, 2), [set(["rows", 1, "s"], "z")]);
  rebaseEither(li(["rows"], 0, 9), set(["rows", 1, "n"], 0), [li(["rows"], 0, 9)]);
});

Deno.test("transform() increment vs increment commutes; set or delete of the number wins", () => {
  rebaseEither(inc(["n"], 2), inc(["n"], 3), [inc(["n"], 2)]);
  rebaseEither(inc(["n"], 2), set(["n"], 100), []);
  rebaseEither(set(["n"], 100), inc(["n"], 2), [set(["n"], 100)]);
  rebaseEither(inc(["n"], 2), del(["n"]), []);
  rebaseEither(del(["n"]), inc(["n"], 2), [del(["n"])]);
  rebaseEither(inc(["n"], 2), ti(["t"], 0, "x"), [inc(["n"], 2)]);
});

Deno.test("transform() set vs set of one path: left wins; an ancestor's set wins regardless of side", () => {
  rebase(set(["o", "k"], 2), set(["o", "k"], 3), "left", [set(["o", "k"], 2)]);
  rebase(set(["o", "k"], 2), set(["o", "k"], 3), "right", []);
  rebaseEither(set(["o", "k"], 2), set(["o"], {}), []);
  rebaseEither(set(["o"], {}), set(["o", "k"], 2), [set(["o"], {})]);
  rebaseEither(set(["o", "new"], 2), set(["o", "other"], 3), [set(["o", "new"], 2)]);
  rebase(set([], 1), set([], 2), "left", [set([], 1)]);
  rebase(set([], 1), set([], 2), "right", []);
});

Deno.test("transform() set vs delete of one path: left wins either way round", () => {
  rebase(set(["o", "k"], 2), del(["o", "k"]), "left", [set(["o", "k"], 2)]);
  rebase(set(["o", "k"], 2), del(["o", "k"]), "right", []);
  rebase(del(["o", "k"]), set(["o", "k"], 2), "left", [del(["o", "k"])]);
  rebase(del(["o", "k"]), set(["o", "k"], 2), "right", []);
  // A kept set of a deleted list element comes back as an insert where the element was.
  rebase(set(["l", 2], "Z"), ld(["l"], 2), "left", [li(["l"], 2, "Z")]);
  rebase(set(["l", 2], "Z"), del(["l", 2]), "left", [li(["l"], 2, "Z")]);
  rebase(set(["l", 2], "Z"), ld(["l"], 2), "right", []);
  rebase(ld(["l"], 2), set(["l", 2], "Z"), "left", [ld(["l"], 2)]);
  rebase(ld(["l"], 2), set(["l", 2], "Z"), "right", []);
  rebase(del(["l", 2]), set(["l", 2], "Z"), "right", []);
});

Deno.test("transform() delete vs delete of one node happens once; a delete inside a deleted subtree is dropped", () => {
  rebaseEither(del(["o", "k"]), del(["o", "k"]), []);
  rebaseEither(del(["o", "k"]), del(["o"]), []);
  rebaseEither(del(["o"]), del(["o", "k"]), [del(["o"])]);
  rebaseEither(del(["l", 2]), ld(["l"], 2), []);
  rebaseEither(ld(["l"], 2), del(["l", 2]), []);
  rebaseEither(ld(["l"], 2), ld(["l"], 2), []);
  rebaseEither(del(["o"]), set(["o", "k"], 7), [del(["o"])]);
});

Deno.test("transform() set of a list element follows inserts, deletes and moves of that list", () => {
  rebaseEither(set(["l", 2], "Z"), li(["l"], 0, "n"), [set(["l", 3], "Z")]);
  rebaseEither(set(["l", 2], "Z"), li(["l"], 3, "n"), [set(["l", 2], "Z")]);
  rebaseEither(set(["l", 2], "Z"), ld(["l"], 0), [set(["l", 1], "Z")]);
  rebaseEither(set(["l", 2], "Z"), lm(["l"], 2, 4), [set(["l", 4], "Z")]);
  rebaseEither(set(["l", 2], "Z"), set(["l", 3], "Y"), [set(["l", 2], "Z")]);
  rebaseEither(set(["l"], []), li(["l"], 0, "n"), [set(["l"], [])]);
  rebaseEither(li(["l"], 0, "n"), set(["l"], []), []);
  rebaseEither(lm(["l"], 0, 1), del(["l"]), []);
});

Deno.test("transform() list_insert vs list_insert: left goes first at one index", () => {
  rebase(li(["l"], 2, "X"), li(["l"], 2, "Y"), "left", [li(["l"], 2, "X")]);
  rebase(li(["l"], 2, "X"), li(["l"], 2, "Y"), "right", [li(["l"], 3, "X")]);
  rebaseEither(li(["l"], 1, "X"), li(["l"], 3, "Y"), [li(["l"], 1, "X")]);
  rebaseEither(li(["l"], 4, "X"), li(["l"], 0, "Y"), [li(["l"], 5, "X")]);
  const left = transform([li(["l"], 2, "X")], [li(["l"], 2, "Y")], "left");
  deepStrictEqual(apply(apply(DOC, [li(["l"], 2, "Y")]), left), {
    ...DOC as object,
    l: ["a", "b", "X", "Y", "c", "d", "e"],
  });
});

Deno.test("transform() list_insert vs list_delete: indexes after the deleted element shift down", () => {
  rebaseEither(li(["l"], 3, "X"), ld(["l"], 1), [li(["l"], 2, "X")]);
  rebaseEither(li(["l"], 1, "X"), ld(["l"], 3), [li(["l"], 1, "X")]);
  rebaseEither(li(["l"], 2, "X"), ld(["l"], 2), [li(["l"], 2, "X")]);
  rebaseEither(li(["l"], 3, "X"), ld(["l"], 2), [li(["l"], 2, "X")]);
  rebaseEither(li(["l"], 5, "X"), del(["l", 4]), [li(["l"], 4, "X")]);
});

Deno.test("transform() list_insert vs list_move: keeps its neighbours; left goes first at the move's target", () => {
  // [a,b,c,d,X,e] then a moves to the end: [b,c,d,X,e,a].
  rebaseEither(li(["l"], 4, "X"), lm(["l"], 0, 4), [li(["l"], 3, "X")]);
  rebaseEither(li(["l"], 0, "X"), lm(["l"], 0, 4), [li(["l"], 0, "X")]);
  rebase(li(["l"], 1, "X"), lm(["l"], 3, 1), "left", [li(["l"], 1, "X")]);
  rebase(li(["l"], 1, "X"), lm(["l"], 3, 1), "right", [li(["l"], 2, "X")]);
});

Deno.test("transform() list_delete vs list ops: follows its element, or vanishes if already deleted", () => {
  rebaseEither(ld(["l"], 2), li(["l"], 0, "n"), [ld(["l"], 3)]);
  rebaseEither(ld(["l"], 2), li(["l"], 2, "n"), [ld(["l"], 3)]);
  rebaseEither(ld(["l"], 2), li(["l"], 3, "n"), [ld(["l"], 2)]);
  rebaseEither(ld(["l"], 2), ld(["l"], 0), [ld(["l"], 1)]);
  rebaseEither(ld(["l"], 2), ld(["l"], 4), [ld(["l"], 2)]);
  rebaseEither(ld(["l"], 2), lm(["l"], 2, 0), [ld(["l"], 0)]);
  rebaseEither(ld(["l"], 2), lm(["l"], 0, 4), [ld(["l"], 1)]);
  rebaseEither(del(["l", 2]), lm(["l"], 2, 4), [del(["l", 4])]);
  rebaseEither(del(["l", 3]), li(["l"], 1, "n"), [del(["l", 4])]);
});

Deno.test("transform() list_move vs list_insert and list_delete: keeps the moved element's intent", () => {
  rebaseEither(lm(["l"], 1, 3), li(["l"], 0, "X"), [lm(["l"], 2, 4)]);
  rebase(lm(["l"], 3, 1), li(["l"], 1, "X"), "left", [lm(["l"], 4, 1)]);
  rebase(lm(["l"], 3, 1), li(["l"], 1, "X"), "right", [lm(["l"], 4, 2)]);
  rebaseEither(lm(["l"], 1, 3), ld(["l"], 1), []);
  rebaseEither(lm(["l"], 1, 3), del(["l", 1]), []);
  rebaseEither(lm(["l"], 1, 3), ld(["l"], 0), [lm(["l"], 0, 2)]);
  rebaseEither(lm(["l"], 0, 4), ld(["l"], 4), [lm(["l"], 0, 3)]);
  // "a" was to go right after "b"; with "b" deleted it is already there.
  rebaseEither(lm(["l"], 0, 1), ld(["l"], 1), []);
});

Deno.test("transform() list_move vs list_move: left's destination wins for one element; two elements both land", () => {
  rebase(lm(["l"], 0, 2), lm(["l"], 0, 4), "left", [lm(["l"], 4, 2)]);
  rebase(lm(["l"], 0, 2), lm(["l"], 0, 4), "right", []);
  rebaseEither(lm(["l"], 0, 2), lm(["l"], 4, 0), [lm(["l"], 1, 3)]);
  deepStrictEqual(apply(apply(DOC, [lm(["l"], 4, 0)]), [lm(["l"], 1, 3)]), {
    ...DOC as object,
    l: ["e", "b", "c", "a", "d"],
  });
  rebaseEither(lm(["l"], 1, 3), lm(["l"], 2, 0), [lm(["l"], 2, 3)]);
  rebaseEither(lm(["l"], 1, 3), set(["l", 1], "Z"), [lm(["l"], 1, 3)]);
});

Deno.test("transform() ops on a replaced root are dropped, a root set survives everything", () => {
  for (const c of [ti(["t"], 0, "x"), inc(["n"], 1), li(["l"], 0, 1), del(["o"]), set(["o"], 1)]) {
    rebaseEither(c, set([], { fresh: true }), []);
    rebaseEither(set([], { fresh: true }), c, [set([], { fresh: true })]);
  }
});

Deno.test("transform() leaves ops on unrelated paths unchanged for every action pair", () => {
  const left: Component[] = [
    set(["o", "k"], 0),
    del(["o", "k"]),
    ti(["o", "s"], 1, "q"),
    td(["o", "s"], 0, 1),
    inc(["rows", 0, "n"], 1),
    set(["rows", 0, "s"], "v"),
  ];
  const right: Component[] = [
    set(["n"], 0),
    del(["t"]),
    ti(["t"], 1, "q"),
    td(["t"], 0, 1),
    li(["l"], 0, 1),
    ld(["l"], 1),
    lm(["l"], 0, 3),
    inc(["n"], 2),
  ];
  for (const c of left) {
    for (const a of right) {
      rebaseEither(c, a, [c]);
      rebaseEither(a, c, [a]);
    }
  }
});

Deno.test("transform() rebases multi-component ops component by component", () => {
  const c: Op = [ti(["t"], 0, "A"), ti(["t"], 6, "B"), li(["l"], 0, "x")];
  const a: Op = [td(["t"], 0, 1), ti(["t"], 0, "Z"), ld(["l"], 0)];
  const cPrime = transform(c, a, "right");
  const viaA = apply(apply(DOC, a), cPrime);
  deepStrictEqual(viaA, apply(apply(DOC, c), transform(a, c, "left")));
  deepStrictEqual((viaA as { t: string }).t, "ZAbcdeBf");
  // Folding against a sequence equals transforming against the concatenation.
  const first = [a[0]!, a[1]!];
  const second = [a[2]!];
  deepStrictEqual(transform(transform(c, first, "right"), second, "right"), cPrime);
});

Deno.test("transform() against an empty op returns the op unchanged", () => {
  const op: Op = [ti(["t"], 0, "A"), lm(["l"], 0, 1)];
  deepStrictEqual(transform(op, [], "left"), op);
  deepStrictEqual(transform([], op, "right"), []);
});

Deno.test("transform() refuses an unknown side with TypeError", () => {
  throws(() => transform([], [], "middle" as Side), TypeError);
});

Deno.test("transformWithCollisions() reports set/set with different values and set/delete of one path", () => {
  const setSet = transformWithCollisions(
    [set(["o", "k"], "red")],
    [set(["o", "k"], "blue")],
    false,
  );
  deepStrictEqual(setSet, {
    op: [],
    collisions: [{ path: ["o", "k"], appliedValue: "blue", incomingValue: "red" }],
  });
  const lww = transformWithCollisions([set(["o", "k"], "red")], [set(["o", "k"], "blue")], true);
  deepStrictEqual(lww.op, [set(["o", "k"], "red")]);
  deepStrictEqual(lww.collisions.length, 1);

  const setDelete = transformWithCollisions([set(["o", "k"], 2)], [del(["o", "k"])], true);
  deepStrictEqual(setDelete, {
    op: [set(["o", "k"], 2)],
    collisions: [{ path: ["o", "k"], appliedValue: undefined, incomingValue: 2 }],
  });
  const deleteSet = transformWithCollisions([ld(["l"], 1)], [set(["l", 1], "Z")], false);
  deepStrictEqual(deleteSet, {
    op: [],
    collisions: [{ path: ["l", 1], appliedValue: "Z", incomingValue: undefined }],
  });
});

Deno.test("transformWithCollisions() reports no collision for equal sets, deletes, nested paths and edits", () => {
  const none: [Op, Op][] = [
    [[set(["o", "k"], { v: [1] })], [set(["o", "k"], { v: [1] })]],
    [[del(["o", "k"])], [del(["o", "k"])]],
    [[set(["o", "k"], 1)], [set(["o"], {})]],
    [[set(["o"], {})], [set(["o", "k"], 1)]],
    [[set(["n"], 1)], [inc(["n"], 1)]],
    [[inc(["n"], 1)], [set(["n"], 1)]],
    [[ti(["t"], 0, "x")], [ti(["t"], 0, "y")]],
    [[li(["l"], 0, "x")], [li(["l"], 0, "y")]],
    [[set(["o", "k"], 1)], [set(["o", "s"], 2)]],
  ];
  for (const [incoming, applied] of none) {
    for (const wins of [true, false]) {
      const { collisions } = transformWithCollisions(incoming, applied, wins);
      deepStrictEqual(collisions, [], JSON.stringify({ incoming, applied }));
    }
  }
});

Deno.test("transformWithCollisions() reports a collision at the path where the pair met", () => {
  // The incoming set's element moved from index 3 to 4 because of an earlier applied insert.
  const { op, collisions } = transformWithCollisions(
    [set(["l", 3], "mine")],
    [li(["l"], 0, "new"), set(["l", 4], "theirs")],
    false,
  );
  deepStrictEqual(op, []);
  deepStrictEqual(collisions, [{ path: ["l", 4], appliedValue: "theirs", incomingValue: "mine" }]);
});

Deno.test("transform() handles a 1,000-component op against a 750-component op", () => {
  const doc: Json = { t: "", l: [] };
  const mine: Op = [];
  const theirs: Op = [];
  for (let i = 0; i < 500; i++) {
    mine.push(ti(["t"], i, "m"), li(["l"], 0, i));
    theirs.push(ti(["t"], 0, "t"));
    if (i % 2 === 0) theirs.push(li(["l"], i / 2, -i));
  }
  const viaTheirs = apply(apply(doc, theirs), transform(mine, theirs, "right"));
  const viaMine = apply(apply(doc, mine), transform(theirs, mine, "left"));
  deepStrictEqual(viaTheirs, viaMine);
  deepStrictEqual((viaMine as { t: string }).t, "t".repeat(500) + "m".repeat(500));
  deepStrictEqual((viaMine as { l: Json[] }).l.length, 750);
});

Deno.test("transform() a set or delete of a node beats every edit at or below it, on either side", () => {
  const edits: Component[] = [
    ti(["o", "s"], 0, "q"),
    td(["o", "s"], 0, 1),
    inc(["o", "k"], 1),
    set(["o", "k"], 9),
    del(["o", "k"]),
  ];
  for (const winner of [set(["o"], { fresh: 1 }), del(["o"])]) {
    for (const edit of edits) {
      rebaseEither(edit, winner, []);
      rebaseEither(winner, edit, [winner]);
    }
  }
  const listEdits: Component[] = [
    li(["l"], 0, "n"),
    ld(["l"], 1),
    lm(["l"], 0, 3),
    del(["l", 2]),
    set(["l", 2], "Z"),
  ];
  for (const winner of [set(["l"], ["fresh"]), del(["l"])]) {
    for (const edit of listEdits) {
      rebaseEither(edit, winner, []);
      rebaseEither(winner, edit, [winner]);
    }
  }
  for (const edit of [ti(["t"], 0, "q"), td(["t"], 1, 2)]) {
    rebaseEither(set(["t"], "new"), edit, [set(["t"], "new")]);
    rebaseEither(del(["t"]), edit, [del(["t"])]);
    rebaseEither(edit, del(["t"]), []);
  }
});
