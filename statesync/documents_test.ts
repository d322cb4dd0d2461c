import assert from "node:assert/strict";
import { AppError, ManualClock, newId } from "../kernel/mod.ts";
import { tempDir } from "../kernel/testing.ts";
import { DocumentManager, type DocumentManagerOptions } from "./documents.ts";
import type { DocEvent } from "./events.ts";
import { apply as applyOp } from "./json0/mod.ts";
import { LockManager } from "./locks.ts";
import type { ConflictStrategy, Json, Op } from "./model.ts";
import type { CommitOutcome, CommitRequest, DocumentStore } from "./store.ts";
import { KvDocumentStore } from "./store_kv.ts";
import { MemoryDocumentStore } from "./store_memory.ts";

/** A memory store that counts commits, lost races and ops read. */
class CountingStore extends MemoryDocumentStore {
  commits = 0;
  conflicts = 0;
  opsRead = 0;
  /** De-duplication entries the manager asked the store to index. */
  indexed = 0;
  override async commit(requests: readonly CommitRequest[]): Promise<CommitOutcome[]> {
    this.commits++;
    this.indexed += requests.reduce((n, r) => n + r.dedupe.length, 0);
    const outcomes = await super.commit(requests);
    this.conflicts += outcomes.filter((o) => o === "version_conflict").length;
    return outcomes;
  }
  override async getOps(id: string, from: number, to: number, limit?: number) {
    const ops = await super.getOps(id, from, to, limit);
    this.opsRead += ops.length;
    return ops;
  }
}

function setup(options: DocumentManagerOptions = {}, store: DocumentStore = new CountingStore()) {
  const events: DocEvent[] = [];
  const clock = new ManualClock();
  const manager = new DocumentManager(store, {
    clock,
    events: { publish: (event) => events.push(event) },
    ...options,
  });
  return {
    manager,
    store,
    events,
    clock,
    async [Symbol.asyncDispose]() {
      await manager.close();
      await store.close();
    },
  };
}

function isStatus(status: AppError["status"], text?: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof AppError, `expected AppError, got ${error}`);
    assert.equal(error.status, status, error.message);
    if (text) assert.match(error.message, text);
    return true;
  };
}

let clientOps = 0;
function input(documentId: string, baseVersion: number, op: Op, sessionId = "s1") {
  return { documentId, baseVersion, sessionId, clientOpId: `op-${++clientOps}`, op };
}

const set = (path: (string | number)[], value: Json): Op => [{
  path,
  action: { type: "set", value },
}];
const insertText = (offset: number, text: string): Op => [{
  path: ["text"],
  action: { type: "text_insert", offset, text },
}];

async function replay(manager: DocumentManager, actor: string, id: string): Promise<Json> {
  const initial = await manager.get(actor, id, 0);
  let content = initial.content;
  let pageToken = "";
  do {
    const page = await manager.history(actor, id, { fromVersion: 0, pageSize: 50, pageToken });
    for (const op of page.operations) content = applyOp(content, op.op);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return content;
}

Deno.test("create() stores a version 0 document with the type's default content", async () => {
  await using t = setup();
  const doc = await t.manager.create("alice", { name: "Notes", type: "text" });
  assert.equal(doc.version, 0);
  assert.equal(doc.ownerId, "alice");
  assert.equal(doc.state, "active");
  assert.equal(doc.conflictStrategy, "merge");
  assert.deepEqual(doc.content, { text: "" });
  assert.deepEqual(await t.manager.get("alice", doc.id), doc);
  const board = await t.manager.create("alice", { name: "B", type: "board" });
  assert.deepEqual(board.content, { columns: [] });
});

Deno.test("create() refuses bad names, types and oversized content, naming the field or limit", async () => {
  await using t = setup({ limits: { maxContentBytes: 2048 } });
  await assert.rejects(
    t.manager.create("alice", { name: "", type: "json" }),
    isStatus("INVALID_ARGUMENT", /name/),
  );
  await assert.rejects(
    t.manager.create("alice", { name: "x", type: "sheet" as "json" }),
    isStatus("INVALID_ARGUMENT", /type/),
  );
  await assert.rejects(
    t.manager.create("alice", { name: "x", type: "json", content: { big: "x".repeat(3000) } }),
    isStatus("RESOURCE_EXHAUSTED", /maxContentBytes=2048/),
  );
  await assert.rejects(
    t.manager.create("alice", { name: "x", type: "json", content: { n: NaN } }),
    isStatus("INVALID_ARGUMENT", /content/),
  );
});

Deno.test("permissions: owner and editors write, viewers and public read, others are refused", async () => {
  await using t = setup();
  const doc = await t.manager.create("alice", {
    name: "Plan",
    type: "json",
    permissions: { editors: ["bob"], viewers: ["carol"] },
  });
  await t.manager.apply("bob", input(doc.id, 0, set(["a"], 1)));
  assert.equal((await t.manager.get("carol", doc.id)).version, 1);
  await assert.rejects(
    t.manager.apply("carol", input(doc.id, 1, set(["a"], 2))),
    isStatus("PERMISSION_DENIED", /carol may not edit/),
  );
  await assert.rejects(t.manager.get("dave", doc.id), isStatus("PERMISSION_DENIED"));
  await assert.rejects(
    t.manager.history("dave", doc.id, { fromVersion: 0 }),
    isStatus("PERMISSION_DENIED"),
  );
  await assert.rejects(t.manager.listConflicts("dave", doc.id), isStatus("PERMISSION_DENIED"));
  await assert.rejects(
    t.manager.update("bob", doc.id, { name: "Mine" }),
    isStatus("PERMISSION_DENIED", /owner/),
  );
  await assert.rejects(t.manager.delete("bob", doc.id), isStatus("PERMISSION_DENIED"));
  await t.manager.update("alice", doc.id, {
    permissions: { editors: ["bob"], viewers: [], publicRead: true },
  });
  assert.equal((await t.manager.get("dave", doc.id)).version, 1);
  await assert.rejects(
    t.manager.apply("dave", input(doc.id, 1, set(["a"], 3))),
    isStatus("PERMISSION_DENIED"),
  );
  const seen = (await t.manager.list("dave", {}, {})).documents.map((d) => d.id);
  assert.deepEqual(seen, [doc.id]);
});

Deno.test("delete() leaves a tombstone: reads and writes answer NOT_FOUND", async () => {
  await using t = setup();
  const doc = await t.manager.create("alice", { name: "Old", type: "json" });
  await t.manager.delete("alice", doc.id);
  await assert.rejects(t.manager.get("alice", doc.id), isStatus("NOT_FOUND"));
  await assert.rejects(
    t.manager.apply("alice", input(doc.id, 0, set(["a"], 1))),
    isStatus("NOT_FOUND"),
  );
  assert.deepEqual((await t.manager.list("alice", {}, {})).documents, []);
  const deleted = await t.manager.list("alice", { state: "deleted" }, {});
  assert.deepEqual(deleted.documents.map((d) => d.id), [doc.id]);
  await assert.rejects(t.manager.get("alice", newId()), isStatus("NOT_FOUND"));
});

Deno.test("an archived document is read-only until the owner reactivates it", async () => {
  await using t = setup();
  const doc = await t.manager.create("alice", { name: "A", type: "json" });
  const archived = await t.manager.update("alice", doc.id, { state: "archived" });
  assert.equal(archived.state, "archived");
  await assert.rejects(
    t.manager.apply("alice", input(doc.id, 0, set(["a"], 1))),
    isStatus("FAILED_PRECONDITION", /archived/),
  );
  await t.manager.update("alice", doc.id, { state: "active" });
  assert.equal((await t.manager.apply("alice", input(doc.id, 0, set(["a"], 1)))).version, 1);
  assert.ok(
    t.events.some((e) => e.type === "document_updated" && e.document?.state === "archived"),
  );
});

Deno.test("apply() at the current version applies, bumps the version and publishes after commit", async () => {
  await using t = setup();
  const doc = await t.manager.create("alice", { name: "T", type: "text" });
  const result = await t.manager.apply("alice", input(doc.id, 0, insertText(0, "Hello")));
  assert.equal(result.version, 1);
  assert.equal(result.duplicate, false);
  assert.equal(result.held, false);
  assert.equal(result.operation.version, 1);
  assert.equal(result.operation.authorId, "alice");
  assert.equal(result.operation.timestamp, t.clock.now());
  assert.deepEqual((await t.manager.get("alice", doc.id)).content, { text: "Hello" });
  const applied = t.events.filter((e) => e.type === "operation_applied");
  assert.deepEqual(applied.map((e) => e.operation?.id), [result.operation.id]);
  assert.equal((await t.store.getHead(doc.id))?.version, 1);
});

Deno.test("apply() refuses a base version ahead of the document with FAILED_PRECONDITION", async () => {
  await using t = setup();
  const doc = await t.manager.create("alice", { name: "T", type: "text" });
  await assert.rejects(
    t.manager.apply("alice", input(doc.id, 5, insertText(0, "x"))),
    isStatus("FAILED_PRECONDITION", /base version 5 is ahead.*version 0/),
  );
});

Deno.test("apply() refuses malformed and ill-fitting ops and applies nothing", async () => {
  await using t = setup();
  const doc = await t.manager.create("alice", {
    name: "J",
    type: "json",
    content: { n: 1, list: [1, 2] },
  });
  await assert.rejects(
    t.manager.apply(
      "alice",
      input(doc.id, 0, [{ path: ["n"], action: { type: "jump" } }] as unknown as Op),
    ),
    isStatus("INVALID_ARGUMENT"),
  );
  await assert.rejects(
    t.manager.apply(
      "alice",
      input(doc.id, 0, [{ path: ["n"], action: { type: "text_insert", offset: 0, text: "x" } }]),
    ),
    isStatus("FAILED_PRECONDITION"),
  );
  await assert.rejects(
    t.manager.apply(
      "alice",
      input(doc.id, 0, [
        { path: ["n"], action: { type: "increment", delta: 1 } },
        { path: ["list"], action: { type: "list_delete", index: 9 } },
      ]),
    ),
    isStatus("FAILED_PRECONDITION"),
  );
  await assert.rejects(
    t.manager.apply("alice", { ...input(doc.id, 0, set(["a"], 1)), documentId: "nope" }),
    isStatus("INVALID_ARGUMENT", /documentId/),
  );
  await assert.rejects(
    t.manager.apply("alice", { ...input(doc.id, 0, set(["a"], 1)), sessionId: "" }),
    isStatus("INVALID_ARGUMENT", /sessionId/),
  );
  const after = await t.manager.get("alice", doc.id);
  assert.equal(after.version, 0);
  assert.deepEqual(after.content, { n: 1, list: [1, 2] });
});

Deno.test("apply() enforces the op and content size limits, naming them", async () => {
  await using t = setup({
    limits: { maxOpBytes: 512, maxComponentsPerOp: 3, maxContentBytes: 2048 },
  });
  const doc = await t.manager.create("alice", { name: "T", type: "text" });
  await assert.rejects(
    t.manager.apply("alice", input(doc.id, 0, insertText(0, "x".repeat(600)))),
    isStatus("RESOURCE_EXHAUSTED", /maxOpBytes=512/),
  );
  await assert.rejects(
    t.manager.apply("alice", input(doc.id, 0, [1, 2, 3, 4].flatMap(() => insertText(0, "a")))),
    isStatus("INVALID_ARGUMENT", /maxComponentsPerOp=3/),
  );
  let version = 0;
  for (let i = 0; i < 5; i++) {
    version =
      (await t.manager.apply("alice", input(doc.id, version, insertText(0, "y".repeat(400)))))
        .version;
  }
  await assert.rejects(
    t.manager.apply("alice", input(doc.id, version, insertText(0, "z".repeat(400)))),
    isStatus("RESOURCE_EXHAUSTED", /maxContentBytes=2048/),
  );
  const doc2 = await t.manager.get("alice", doc.id);
  assert.equal(doc2.version, 5);
  assert.ok(!JSON.stringify(doc2.content).includes("z"));
});

Deno.test("apply() transforms a stale text insert past concurrent inserts and counts transforms", async () => {
  await using t = setup();
  const doc = await t.manager.create("alice", {
    name: "T",
    type: "text",
    content: { text: "world" },
  });
  await t.manager.apply("alice", input(doc.id, 0, insertText(0, "Hello ")));
  await t.manager.apply("alice", input(doc.id, 1, insertText(11, "!")));
  // Made against version 0: "world" -> "wor?ld".
  const stale = await t.manager.apply("alice", input(doc.id, 0, insertText(3, "?"), "s2"));
  assert.equal(stale.version, 3);
  assert.deepEqual(stale.operation.op, insertText(9, "?"));
  assert.equal(stale.operation.baseVersion, 0);
  assert.deepEqual((await t.manager.get("alice", doc.id)).content, { text: "Hello wor?ld!" });
  assert.equal((await t.manager.stats()).transforms, 2);
});

Deno.test("two stale inserts at one offset are ordered by server order (left wins)", async () => {
  await using t = setup();
  const doc = await t.manager.create("alice", { name: "T", type: "text", content: { text: "ab" } });
  await t.manager.apply("alice", input(doc.id, 0, insertText(1, "X")));
  await t.manager.apply("alice", input(doc.id, 0, insertText(1, "Y"), "s2"));
  assert.deepEqual((await t.manager.get("alice", doc.id)).content, { text: "aXYb" });
});

Deno.test("a resent op is acknowledged once with duplicate=true and never applied twice", async () => {
  await using t = setup();
  const doc = await t.manager.create("alice", { name: "C", type: "json", content: { n: 0 } });
  const op: Op = [{ path: ["n"], action: { type: "increment", delta: 1 } }];
  const first = input(doc.id, 0, op);
  const [a, b] = await Promise.all([
    t.manager.apply("alice", first),
    t.manager.apply("alice", first),
  ]);
  const again = await t.manager.apply("alice", first);
  assert.deepEqual([a.duplicate, b.duplicate, again.duplicate], [false, true, true]);
  assert.equal(b.operation.id, a.operation.id);
  assert.equal(again.operation.id, a.operation.id);
  assert.equal(again.version, 1);
  // The same client op id in another session is a different op.
  await t.manager.apply("alice", { ...first, sessionId: "s9" });
  const now = await t.manager.get("alice", doc.id);
  assert.deepEqual(now.content, { n: 2 });
  assert.equal(now.version, 2);
});

Deno.test("a resend is recognised after a restart, also when its first ack was lost", async () => {
  const store = new CountingStore();
  const op: Op = [{ path: ["n"], action: { type: "increment", delta: 1 } }];
  const send = (manager: DocumentManager, documentId: string, v: number) =>
    manager.apply("alice", {
      documentId,
      baseVersion: v,
      sessionId: "s1",
      clientOpId: `c${v}`,
      op,
    });
  const first = new DocumentManager(store, { snapshotEvery: 5 });
  const doc = await first.create("alice", { name: "C", type: "json", content: { n: 0 } });
  for (let v = 0; v < 12; v++) await send(first, doc.id, v);
  await first.close();
  const second = new DocumentManager(store, { snapshotEvery: 5 });
  try {
    // Version 0 and 7 are older than the last snapshot (10): found in the op log after
    // their base version (plain applied ops are not indexed separately).
    for (const v of [0, 7, 11]) {
      const result = await send(second, doc.id, v);
      assert.equal(result.duplicate, true);
      assert.equal(result.version, v + 1);
    }
    assert.deepEqual((await second.get("alice", doc.id)).content, { n: 12 });
    assert.equal(store.indexed, 0);
  } finally {
    await second.close();
    await store.close();
  }
});

Deno.test("a resend older than the ops kept in memory is found in the op log", async () => {
  await using t = setup({ recentOps: 3 });
  const doc = await t.manager.create("alice", { name: "C", type: "json", content: { n: 0 } });
  const op: Op = [{ path: ["n"], action: { type: "increment", delta: 1 } }];
  for (let v = 0; v < 10; v++) {
    await t.manager.apply("alice", { ...input(doc.id, v, op), clientOpId: `c${v}` });
  }
  // Sent at version 2 by a client that then lost the ack: applied as version 3.
  const resend = await t.manager.apply("alice", { ...input(doc.id, 3, op), clientOpId: "c3" });
  assert.deepEqual([resend.duplicate, resend.version], [true, 4]);
  // A new op sent at the same old version is transformed and applied.
  const fresh = await t.manager.apply("alice", { ...input(doc.id, 2, op), clientOpId: "new" });
  assert.deepEqual([fresh.duplicate, fresh.version], [false, 11]);
  assert.deepEqual((await t.manager.get("alice", doc.id)).content, { n: 11 });
});

Deno.test("an op more than maxOpsBehind versions behind is refused before any history is read; a resend in memory is still answered", async () => {
  await using t = setup({ recentOps: 4, limits: { maxOpsBehind: 3 } });
  const store = t.store as CountingStore;
  const doc = await t.manager.create("alice", { name: "C", type: "json", content: { n: 0 } });
  const op: Op = [{ path: ["n"], action: { type: "increment", delta: 1 } }];
  for (let v = 0; v < 6; v++) {
    await t.manager.apply("alice", { ...input(doc.id, v, op), clientOpId: `c${v}` });
  }
  // Version 6, versions 3-6 in memory. Version 1 is 5 behind: refused without reading
  // versions 2-3 from the store (which accepting it would take).
  const read = store.opsRead;
  await assert.rejects(
    t.manager.apply("alice", input(doc.id, 1, op)),
    (e: AppError) =>
      e.status === "FAILED_PRECONDITION" && /maxOpsBehind 3/.test(e.message) &&
      (e.details as { version: number }).version === 6,
  );
  assert.equal(store.opsRead, read, "no history was read for the refused op");
  // 3 behind is allowed.
  assert.equal((await t.manager.apply("alice", input(doc.id, 3, op))).version, 7);
  // A resend of an op still in memory is answered as a duplicate, however far behind (4).
  const resend = await t.manager.apply("alice", { ...input(doc.id, 3, op), clientOpId: "c3" });
  assert.deepEqual([resend.duplicate, resend.version], [true, 4]);
  assert.deepEqual((await t.manager.get("alice", doc.id)).content, { n: 7 });
});

Deno.test("a stale op reading old history while a commit trims memory sees every op once", async () => {
  // getOps and commit wait for gates, so a commit lands while older history is being read.
  class GatedStore extends CountingStore {
    gate: PromiseWithResolvers<void> | undefined;
    override async getOps(id: string, from: number, to: number, limit?: number) {
      const ops = await super.getOps(id, from, to, limit);
      await this.gate?.promise;
      return ops;
    }
  }
  const store = new GatedStore();
  await using t = setup({ recentOps: 2 }, store);
  const doc = await t.manager.create("alice", { name: "C", type: "json", content: { n: 0 } });
  const op: Op = [{ path: ["n"], action: { type: "increment", delta: 1 } }];
  for (let v = 0; v < 5; v++) await t.manager.apply("alice", input(doc.id, v, op));
  store.gate = Promise.withResolvers();
  // Sent at version 5 (current), then one at version 0 that must read versions 1..3.
  const current = t.manager.apply("alice", input(doc.id, 5, op));
  const stale = t.manager.apply("alice", input(doc.id, 0, op, "s2"));
  const first = await current; // its commit drops version 4 from memory
  store.gate.resolve();
  assert.equal(first.version, 6);
  assert.equal((await stale).version, 7);
  assert.deepEqual((await t.manager.get("alice", doc.id)).content, { n: 7 });
});

async function collide(strategy: ConflictStrategy) {
  const t = setup();
  const doc = await t.manager.create("alice", {
    name: "S",
    type: "json",
    content: { color: "white", size: 1 },
    conflictStrategy: strategy,
    permissions: { editors: ["bob"] },
  });
  const first = await t.manager.apply("alice", input(doc.id, 0, set(["color"], "red")));
  const second = await t.manager.apply(
    "bob",
    input(doc.id, 0, [
      { path: ["color"], action: { type: "set", value: "blue" } },
      { path: ["size"], action: { type: "increment", delta: 1 } },
    ], "s2"),
  );
  return { t, doc, first, second };
}

Deno.test("merge: the applied value wins, the conflict is recorded auto_resolved and resolvable", async () => {
  const { t, doc, first, second } = await collide("merge");
  await using _ = t;
  assert.equal(second.held, false);
  assert.equal(second.version, 2);
  assert.equal(second.conflicts.length, 1);
  const conflict = second.conflicts[0]!;
  assert.equal(conflict.state, "auto_resolved");
  assert.deepEqual(conflict.path, ["color"]);
  assert.equal(conflict.appliedValue, "red");
  assert.equal(conflict.incomingValue, "blue");
  assert.equal(conflict.resolvedValue, "red");
  assert.equal(conflict.applied.id, first.operation.id);
  assert.equal(conflict.incoming.id, second.operation.id);
  // The non-colliding part of the op merged.
  assert.deepEqual((await t.manager.get("alice", doc.id)).content, { color: "red", size: 2 });
  assert.ok(t.events.some((e) => e.type === "conflict_detected" && e.conflict?.id === conflict.id));
  assert.deepEqual((await t.manager.listConflicts("alice", doc.id)).conflicts, []);
  const all = await t.manager.listConflicts("alice", doc.id, { includeResolved: true });
  assert.deepEqual(all.conflicts.map((c) => c.id), [conflict.id]);

  const resolved = await t.manager.resolveConflict("bob", doc.id, conflict.id, {
    side: "incoming",
  });
  assert.equal(resolved.conflict.state, "resolved");
  assert.equal(resolved.conflict.resolvedBy, "bob");
  assert.equal(resolved.conflict.resolvedValue, "blue");
  assert.equal(resolved.operation?.authorId, "bob");
  assert.equal(resolved.operation?.version, 3);
  assert.deepEqual((await t.manager.get("alice", doc.id)).content, { color: "blue", size: 2 });
  assert.ok(t.events.some((e) => e.type === "conflict_resolved" && e.conflict?.id === conflict.id));
  await assert.rejects(
    t.manager.resolveConflict("bob", doc.id, conflict.id, { side: "applied" }),
    isStatus("FAILED_PRECONDITION", /already resolved/),
  );
  assert.equal((await t.manager.stats()).conflicts, 1);
});

Deno.test("lww: the later op in server order wins, recorded auto_resolved", async () => {
  const { t, doc, second } = await collide("lww");
  await using _ = t;
  const conflict = second.conflicts[0]!;
  assert.equal(conflict.state, "auto_resolved");
  assert.equal(conflict.resolvedValue, "blue");
  assert.deepEqual((await t.manager.get("alice", doc.id)).content, { color: "blue", size: 2 });
  // Choosing the value already in effect changes nothing and applies no op.
  const same = await t.manager.resolveConflict("alice", doc.id, conflict.id, { side: "incoming" });
  assert.equal(same.operation, undefined);
  assert.equal(same.conflict.state, "resolved");
  assert.equal((await t.manager.get("alice", doc.id)).version, 2);
});

Deno.test("manual: the colliding op is held, not applied, until someone resolves it", async () => {
  const { t, doc, second } = await collide("manual");
  await using _ = t;
  assert.equal(second.held, true);
  assert.equal(second.version, 1);
  assert.equal(second.operation.version, 0);
  const conflict = second.conflicts[0]!;
  assert.equal(conflict.state, "open");
  let now = await t.manager.get("alice", doc.id);
  assert.equal(now.version, 1);
  assert.deepEqual(now.content, { color: "red", size: 1 });
  assert.deepEqual((await t.manager.listConflicts("bob", doc.id)).conflicts.map((c) => c.id), [
    conflict.id,
  ]);
  // A resend of the held op is a duplicate, still held.
  const resend = await t.manager.apply("bob", {
    documentId: doc.id,
    baseVersion: 0,
    sessionId: "s2",
    clientOpId: second.operation.clientOpId,
    op: second.operation.op,
  });
  assert.equal(resend.duplicate, true);
  assert.equal(resend.held, true);
  // Another edit lands meanwhile; taking the incoming side applies the whole held op on top.
  await t.manager.apply("alice", input(doc.id, 1, set(["note"], "x")));
  const resolved = await t.manager.resolveConflict("alice", doc.id, conflict.id, {
    side: "incoming",
  });
  assert.equal(resolved.conflict.state, "resolved");
  assert.equal(resolved.operation?.version, 3);
  now = await t.manager.get("alice", doc.id);
  assert.deepEqual(now.content, { color: "blue", size: 2, note: "x" });
  assert.deepEqual((await t.manager.listConflicts("bob", doc.id)).conflicts, []);
});

Deno.test("manual: resolving with the applied side or a supplied value", async () => {
  const { t, doc, second } = await collide("manual");
  await using _ = t;
  const kept = await t.manager.resolveConflict("alice", doc.id, second.conflicts[0]!.id, {
    side: "applied",
  });
  assert.equal(kept.operation, undefined);
  assert.equal(kept.conflict.state, "resolved");
  assert.deepEqual((await t.manager.get("alice", doc.id)).content, { color: "red", size: 1 });
  const again = await t.manager.apply("bob", input(doc.id, 0, set(["color"], "green"), "s3"));
  assert.equal(again.held, true);
  const chosen = await t.manager.resolveConflict("bob", doc.id, again.conflicts[0]!.id, {
    value: "purple",
  });
  assert.equal(chosen.conflict.resolvedValue, "purple");
  assert.equal(chosen.operation?.authorId, "bob");
  assert.deepEqual((await t.manager.get("alice", doc.id)).content, { color: "purple", size: 1 });
  await assert.rejects(
    t.manager.resolveConflict("alice", doc.id, newId(), { side: "applied" }),
    isStatus("NOT_FOUND"),
  );
});

Deno.test("apply() refuses an op on a path another user has locked, naming the holder", async () => {
  const clock = new ManualClock();
  const locks = new LockManager({ clock, timers: clock });
  await using t = setup({ locks, clock });
  const doc = await t.manager.create("alice", {
    name: "L",
    type: "json",
    content: { title: "t", body: "b" },
    permissions: { editors: ["bob"] },
  });
  await locks.acquire("alice", { documentId: doc.id, path: ["title"], ttlMs: 10_000 });
  await assert.rejects(
    t.manager.apply("bob", input(doc.id, 0, set(["title"], "mine"))),
    isStatus("FAILED_PRECONDITION", /alice/),
  );
  await t.manager.apply("bob", input(doc.id, 0, set(["body"], "ok")));
  await t.manager.apply("alice", input(doc.id, 1, set(["title"], "T")));
  clock.advance(10_001);
  await t.manager.apply("bob", input(doc.id, 2, set(["title"], "after expiry")));
  assert.deepEqual((await t.manager.get("bob", doc.id)).content, {
    title: "after expiry",
    body: "ok",
  });
  locks.close();
});

Deno.test("history() pages through a version range", async () => {
  await using t = setup();
  const doc = await t.manager.create("alice", { name: "H", type: "json", content: { n: 0 } });
  for (let v = 0; v < 25; v++) {
    await t.manager.apply(
      "alice",
      input(doc.id, v, [{ path: ["n"], action: { type: "increment", delta: 1 } }]),
    );
  }
  const versions: number[] = [];
  let pageToken = "";
  let pages = 0;
  do {
    const page = await t.manager.history("alice", doc.id, {
      fromVersion: 3,
      toVersion: 21,
      pageSize: 5,
      pageToken,
    });
    versions.push(...page.operations.map((o) => o.version));
    pageToken = page.nextPageToken;
    pages++;
  } while (pageToken !== "");
  assert.deepEqual(versions, Array.from({ length: 18 }, (_, i) => i + 4));
  assert.equal(pages, 4);
  const tail = await t.manager.history("alice", doc.id, { fromVersion: 20 });
  assert.deepEqual(tail.operations.map((o) => o.version), [21, 22, 23, 24, 25]);
  assert.equal(tail.nextPageToken, "");
  await assert.rejects(
    t.manager.history("alice", doc.id, { fromVersion: 0, pageToken: "bogus" }),
    isStatus("INVALID_ARGUMENT", /pageToken/),
  );
  await assert.rejects(
    t.manager.history("alice", doc.id, { fromVersion: 0, pageSize: 5000 }),
    isStatus("INVALID_ARGUMENT", /pageSize/),
  );
});

Deno.test("get() at a past version replays from the nearest snapshot", async () => {
  await using t = setup({ snapshotEvery: 10 });
  const doc = await t.manager.create("alice", { name: "P", type: "json", content: { list: [] } });
  for (let v = 0; v < 25; v++) {
    await t.manager.apply(
      "alice",
      input(doc.id, v, [{ path: ["list"], action: { type: "list_insert", index: v, value: v } }]),
    );
  }
  await t.manager.close();
  assert.equal((await t.store.getSnapshot(doc.id, 25))?.version, 20);
  assert.equal((await t.store.getSnapshot(doc.id, 19))?.version, 10);
  const reader = new DocumentManager(t.store, {});
  try {
    const past = await reader.get("alice", doc.id, 13);
    assert.equal(past.version, 13);
    assert.deepEqual(past.content, { list: Array.from({ length: 13 }, (_, i) => i) });
    assert.deepEqual((await reader.get("alice", doc.id, 0)).content, { list: [] });
    await assert.rejects(reader.get("alice", doc.id, 26), isStatus("FAILED_PRECONDITION"));
  } finally {
    await reader.close();
  }
});

Deno.test("loading a document with a long history reads only the ops after its last snapshot", async () => {
  const store = new CountingStore();
  const writer = new DocumentManager(store, { snapshotEvery: 100 });
  const doc = await writer.create("alice", { name: "Long", type: "json", content: { n: 0 } });
  const op: Op = [{ path: ["n"], action: { type: "increment", delta: 1 } }];
  for (let v = 0; v < 1050; v++) {
    await writer.apply("alice", {
      documentId: doc.id,
      baseVersion: v,
      sessionId: "s",
      clientOpId: `${v}`,
      op,
    });
  }
  await writer.close();
  store.opsRead = 0;
  const reader = new DocumentManager(store, { snapshotEvery: 100 });
  try {
    const loaded = await reader.get("alice", doc.id);
    assert.equal(loaded.version, 1050);
    assert.deepEqual(loaded.content, { n: 1050 });
    assert.equal(store.opsRead, 50);
  } finally {
    await reader.close();
    await store.close();
  }
});

/** A Deno KV store (in memory) that counts its commit calls. */
class CountingKvStore extends KvDocumentStore {
  commits = 0;
  conflicts = 0;
  override async commit(requests: readonly CommitRequest[]): Promise<CommitOutcome[]> {
    this.commits++;
    const outcomes = await super.commit(requests);
    this.conflicts += outcomes.filter((o) => o === "version_conflict").length;
    return outcomes;
  }
}

Deno.test("concurrent applies to many documents share few store commits (group commit)", async () => {
  const store = new CountingKvStore(await Deno.openKv(":memory:"), { ownsKv: true });
  await using t = setup({}, store);
  const docs = await Promise.all(
    Array.from(
      { length: 20 },
      (_, i) => t.manager.create("alice", { name: `d${i}`, type: "json", content: { n: 0 } }),
    ),
  );
  store.commits = 0;
  const op: Op = [{ path: ["n"], action: { type: "increment", delta: 1 } }];
  const results = await Promise.all(
    docs.flatMap((doc) =>
      Array.from({ length: 10 }, () => t.manager.apply("alice", input(doc.id, 0, op)))
    ),
  );
  assert.equal(results.length, 200);
  // One commit per op would be 200; group commit needs far fewer.
  assert.ok(store.commits <= 20, `expected few commits, got ${store.commits}`);
  for (const doc of docs) {
    const now = await t.manager.get("alice", doc.id);
    assert.equal(now.version, 10);
    assert.deepEqual(now.content, { n: 10 });
  }
});

Deno.test("stale concurrent writers on one document converge to the replay of history", async () => {
  await using t = setup();
  const doc = await t.manager.create("alice", { name: "Hot", type: "text", content: { text: "" } });
  const writers = Array.from({ length: 10 }, (_, w) =>
    (async () => {
      let base = 0;
      for (let i = 0; i < 10; i++) {
        const letter = String.fromCharCode(97 + w);
        const result = await t.manager.apply(
          "alice",
          input(doc.id, base, insertText(0, letter), `w${w}`),
        );
        base = Math.max(0, result.version - 5); // deliberately stale
      }
    })());
  await Promise.all(writers);
  const final = await t.manager.get("alice", doc.id);
  assert.equal(final.version, 100);
  const text = (final.content as { text: string }).text;
  for (let w = 0; w < 10; w++) {
    assert.equal(text.split(String.fromCharCode(97 + w)).length - 1, 10);
  }
  assert.deepEqual(await replay(t.manager, "alice", doc.id), final.content);
  assert.ok((await t.manager.stats()).transforms > 0);
});

Deno.test("two managers racing on one store retry the transform and lose nothing", async () => {
  const store = new CountingStore();
  const a = new DocumentManager(store, {});
  const b = new DocumentManager(store, {});
  try {
    const doc = await a.create("alice", {
      name: "Race",
      type: "json",
      content: { list: [], n: 0 },
    });
    const work = (m: DocumentManager, tag: string) =>
      Promise.all(Array.from({ length: 20 }, (_, i) =>
        m.apply("alice", {
          documentId: doc.id,
          baseVersion: 0,
          sessionId: tag,
          clientOpId: `${i}`,
          op: [
            { path: ["list"], action: { type: "list_insert", index: 0, value: `${tag}${i}` } },
            { path: ["n"], action: { type: "increment", delta: 1 } },
          ],
        })));
    await Promise.all([work(a, "a"), work(b, "b")]);
    assert.ok(store.conflicts > 0, "expected at least one lost race");
    const fromA = await a.get("alice", doc.id).catch(() => null);
    const fresh = new DocumentManager(store, {});
    const final = await fresh.get("alice", doc.id);
    await fresh.close();
    assert.equal(final.version, 40);
    const content = final.content as { list: string[]; n: number };
    assert.equal(content.n, 40);
    assert.equal(new Set(content.list).size, 40);
    assert.deepEqual(await replay(b, "alice", doc.id), final.content);
    assert.ok(fromA === null || fromA.version <= 40);
  } finally {
    await a.close();
    await b.close();
    await store.close();
  }
});

Deno.test("list() filters by owner, type and state and pages with a token", async () => {
  await using t = setup();
  for (let i = 0; i < 5; i++) await t.manager.create("alice", { name: `a${i}`, type: "json" });
  for (let i = 0; i < 3; i++) await t.manager.create("bob", { name: `b${i}`, type: "text" });
  const shared = await t.manager.create("bob", {
    name: "shared",
    type: "text",
    permissions: { viewers: ["alice"] },
  });
  const ids: string[] = [];
  let pageToken = "";
  do {
    const page = await t.manager.list("alice", {}, { pageSize: 2, pageToken });
    assert.ok(page.documents.length <= 2);
    assert.ok(page.documents.every((d) => d.content === null));
    ids.push(...page.documents.map((d) => d.id));
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  assert.equal(ids.length, 6);
  assert.ok(ids.includes(shared.id));
  const texts = await t.manager.list("alice", { type: "text" }, {});
  assert.deepEqual(texts.documents.map((d) => d.id), [shared.id]);
  const bobs = await t.manager.list("bob", { ownerId: "bob" }, {});
  assert.equal(bobs.documents.length, 4);
});

Deno.test("idle documents are unloaded beyond maxCachedDocuments", async () => {
  await using t = setup({ maxCachedDocuments: 2 });
  const docs = [];
  for (let i = 0; i < 5; i++) {
    const doc = await t.manager.create("alice", { name: `d${i}`, type: "json" });
    await t.manager.apply("alice", input(doc.id, 0, set(["i"], i)));
    docs.push(doc);
  }
  for (const doc of docs) await t.manager.get("alice", doc.id);
  assert.ok(t.manager.loadedDocuments <= 2, `loaded ${t.manager.loadedDocuments}`);
  assert.deepEqual((await t.manager.get("alice", docs[0]!.id)).content, { i: 0 });
});

Deno.test("stats() counts documents, operations, conflicts and open conflicts", async () => {
  const { t, doc } = await collide("manual");
  await using _ = t;
  await t.manager.create("alice", { name: "other", type: "json" });
  const stats = await t.manager.stats();
  assert.deepEqual(
    { ...stats, transforms: 0 },
    { documents: 2, operations: 1, conflicts: 1, openConflicts: 1, transforms: 0 },
  );
  assert.equal(stats.transforms, 1);
  assert.ok(doc.id);
});

Deno.test("two managers on one Deno KV file race, retry the transform and lose nothing", async () => {
  await using dir = await tempDir("statesync-race-");
  const path = `${dir.path}/race.kv`;
  await using storeA = new CountingKvStore(await Deno.openKv(path), { ownsKv: true });
  await using storeB = new CountingKvStore(await Deno.openKv(path), { ownsKv: true });
  const a = new DocumentManager(storeA, {});
  const b = new DocumentManager(storeB, {});
  try {
    const doc = await a.create("alice", { name: "Race", type: "text", content: { text: "" } });
    // Both hold version 0 before either writes, so their first commits race for version 1
    // (B loading only after A's commit would transform locally and never lose a race).
    await Promise.all([a.get("alice", doc.id), b.get("alice", doc.id)]);
    const work = (m: DocumentManager, tag: string) =>
      Promise.all(Array.from({ length: 15 }, (_, i) =>
        m.apply("alice", {
          documentId: doc.id,
          baseVersion: 0,
          sessionId: tag,
          clientOpId: `${i}`,
          op: [{ path: ["text"], action: { type: "text_insert", offset: 0, text: tag } }],
        })));
    const [ra, rb] = await Promise.all([work(a, "a"), work(b, "b")]);
    const versions = [...ra, ...rb].map((r) => r.version).sort((x, y) => x - y);
    assert.deepEqual(versions, Array.from({ length: 30 }, (_, i) => i + 1));
    assert.ok(storeA.conflicts + storeB.conflicts > 0, "expected at least one lost race");
    // A manager sees another instance's commits when it next loses a race or reloads.
    const fresh = new DocumentManager(storeA, {});
    const final = await fresh.get("alice", doc.id);
    const text = (final.content as { text: string }).text;
    assert.equal(text.split("a").length - 1, 15);
    assert.equal(text.split("b").length - 1, 15);
    assert.deepEqual(await replay(fresh, "alice", doc.id), final.content);
    await fresh.close();
  } finally {
    await a.close();
    await b.close();
  }
});

/** A memory store whose commits wait for the test to open a gate (or fail on demand). */
class GatedStore extends MemoryDocumentStore {
  #gate = Promise.withResolvers<void>();
  failNext = false;
  open(): void {
    this.#gate.resolve();
  }
  override async commit(requests: readonly CommitRequest[]): Promise<CommitOutcome[]> {
    await this.#gate.promise;
    if (this.failNext) {
      this.failNext = false;
      throw new Error("disk on fire");
    }
    return await super.commit(requests);
  }
}

Deno.test("apply() acknowledges, publishes and shows an op only after its commit", async () => {
  const store = new GatedStore();
  store.open();
  await using t = setup({}, store);
  const doc = await t.manager.create("alice", { name: "G", type: "json", content: { n: 0 } });
  const gated = new GatedStore();
  await gated.createDocument((await store.getHead(doc.id))!, { n: 0 });
  const manager = new DocumentManager(gated, { events: { publish: (e) => t.events.push(e) } });
  let acked = false;
  const pending = manager.apply("alice", input(doc.id, 0, set(["n"], 1))).then((r) => {
    acked = true;
    return r;
  });
  // Let every microtask and a macrotask run: the commit is still held at the gate.
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(acked, false);
  assert.equal(t.events.length, 0);
  assert.deepEqual((await manager.get("alice", doc.id)).content, { n: 0 });
  gated.open();
  const result = await pending;
  assert.equal(result.version, 1);
  assert.equal(t.events.filter((e) => e.type === "operation_applied").length, 1);
  assert.deepEqual((await manager.get("alice", doc.id)).content, { n: 1 });
  await manager.close();
});

Deno.test("a failed store commit rejects the op, keeps nothing of it, and the next op works", async () => {
  const store = new GatedStore();
  store.open();
  await using t = setup({}, store);
  const doc = await t.manager.create("alice", { name: "F", type: "json", content: { n: 0 } });
  store.failNext = true;
  await assert.rejects(
    t.manager.apply("alice", input(doc.id, 0, set(["n"], 1))),
    isStatus("INTERNAL"),
  );
  const after = await t.manager.get("alice", doc.id);
  assert.equal(after.version, 0);
  assert.deepEqual(after.content, { n: 0 });
  const ok = await t.manager.apply("alice", input(doc.id, 0, set(["n"], 2)));
  assert.equal(ok.version, 1);
  assert.deepEqual((await t.manager.get("alice", doc.id)).content, { n: 2 });
});

Deno.test("the content limit counts the real size: deleted text makes room again", async () => {
  await using t = setup({ limits: { maxContentBytes: 2048, maxOpBytes: 1024 } });
  const doc = await t.manager.create("alice", { name: "T", type: "text" });
  let version = 0;
  for (let round = 0; round < 20; round++) {
    version =
      (await t.manager.apply("alice", input(doc.id, version, insertText(0, "x".repeat(900)))))
        .version;
    version = (await t.manager.apply(
      "alice",
      input(doc.id, version, [{
        path: ["text"],
        action: { type: "text_delete", offset: 0, length: 900 },
      }]),
    )).version;
  }
  assert.equal(version, 40);
  assert.deepEqual((await t.manager.get("alice", doc.id)).content, { text: "" });
});

/** A memory store that holds every commit until the test settles it (commits or fails). */
class SteppedStore extends MemoryDocumentStore {
  held: {
    requests: readonly CommitRequest[];
    settle: (outcome: "commit" | "fail") => void;
  }[] = [];
  #arrived: (() => void) | undefined;
  /** Resolves once `count` commits have reached the store (fails after 5 s). */
  async commits(count: number): Promise<void> {
    const timeout = Promise.withResolvers<never>();
    const timer = setTimeout(
      () => timeout.reject(new Error(`${this.held.length} commits arrived, expected ${count}`)),
      5000,
    );
    try {
      while (this.held.length < count) {
        const arrived = new Promise<void>((resolve) => (this.#arrived = resolve));
        await Promise.race([arrived, timeout.promise]);
      }
    } finally {
      clearTimeout(timer);
    }
  }
  override async commit(requests: readonly CommitRequest[]): Promise<CommitOutcome[]> {
    const settled = Promise.withResolvers<"commit" | "fail">();
    this.held.push({ requests, settle: settled.resolve });
    this.#arrived?.();
    if (await settled.promise === "fail") throw new Error("disk on fire");
    return await super.commit(requests);
  }
}

/** Let every pending microtask and one macrotask run. */
function settleTurns(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

async function steppedSetup() {
  const store = new SteppedStore();
  const events: DocEvent[] = [];
  const manager = new DocumentManager(store, { events: { publish: (e) => events.push(e) } });
  const ids: string[] = [];
  for (const name of ["A", "B"]) {
    const pending = manager.create("alice", { name, type: "json", content: { n: 0 } });
    ids.push((await pending).id);
  }
  return { store, events, manager, a: ids[0]!, b: ids[1]! };
}

Deno.test("a second group commit goes while the first is in flight; a busy document waits", async () => {
  const { store, events, manager, a, b } = await steppedSetup();
  const acked: string[] = [];
  const a1 = manager.apply("alice", input(a, 0, set(["n"], 1))).then((r) => {
    acked.push("a1");
    return r;
  });
  await store.commits(1);
  // Another document does not wait for the commit in flight.
  const b1 = manager.apply("alice", input(b, 0, set(["n"], 1))).then((r) => {
    acked.push("b1");
    return r;
  });
  await store.commits(2);
  assert.deepEqual(store.held[1]!.requests.map((r) => r.documentId), [b]);
  // The busy document's next op is prepared (on the uncommitted state) but not committed:
  // its commit needs the outcome of the one in flight.
  const a2 = manager.apply("alice", input(a, 1, set(["n"], 2)));
  await settleTurns();
  assert.equal(store.held.length, 2);
  store.held[1]!.settle("commit");
  assert.equal((await b1).version, 1);
  assert.deepEqual(acked, ["b1"]);
  assert.equal(events.length, 1);
  store.held[0]!.settle("commit");
  assert.equal((await a1).version, 1);
  await store.commits(3);
  const third = store.held[2]!.requests;
  assert.deepEqual(third.map((r) => [r.documentId, r.expectedVersion]), [[a, 1]]);
  store.held[2]!.settle("commit");
  assert.equal((await a2).version, 2);
  assert.deepEqual((await manager.get("alice", a)).content, { n: 2 });
  assert.deepEqual(
    events.map((e) => [e.documentId, e.version]),
    [[b, 1], [a, 1], [a, 2]],
  );
  await manager.close();
});

Deno.test("a failed commit makes the document's waiting changes prepare again on what is stored", async () => {
  const { store, manager, a, b } = await steppedSetup();
  const a1 = manager.apply("alice", input(a, 0, set(["m"], 1)));
  await store.commits(1);
  const b1 = manager.apply("alice", input(b, 0, set(["n"], 1)));
  await store.commits(2);
  // Sent at version 0 too: prepared after a1, so transformed against it (version 2 then).
  const a2 = manager.apply("alice", input(a, 0, set(["n"], 5), "s2"));
  await settleTurns();
  assert.equal(store.held.length, 2);
  store.held[0]!.settle("fail");
  await assert.rejects(a1, isStatus("INTERNAL"));
  // a2 is prepared again against the stored document (a1 never happened): version 1.
  await store.commits(3);
  assert.deepEqual(store.held[2]!.requests.map((r) => [r.documentId, r.expectedVersion]), [[
    a,
    0,
  ]]);
  store.held[2]!.settle("commit");
  const second = await a2;
  assert.equal(second.version, 1);
  assert.deepEqual((await manager.get("alice", a)).content, { n: 5 });
  store.held[1]!.settle("commit");
  assert.equal((await b1).version, 1);
  assert.equal((await store.getHead(a))!.version, 1);
  await manager.close();
});
