/**
 * The one test suite every {@link DocumentStore} implementation passes. Each store's
 * test file calls {@link storeSuite} with a factory.
 *
 * @example
 * ```ts
 * storeSuite("MemoryDocumentStore", () => Promise.resolve(disposable(new MemoryDocumentStore())));
 * ```
 * @module
 */
import assert from "node:assert/strict";
import { AppError, newId } from "../kernel/mod.ts";
import type { ConflictRecord, Json, OperationRecord } from "./model.ts";
import type { CommitRequest, DedupeEntry, DocumentHead, DocumentStore } from "./store.ts";

/** A store under test plus whatever must be cleaned up after it. */
export interface StoreFixture extends AsyncDisposable {
  store: DocumentStore;
  /** Reopen the same data in a fresh store instance (persistent stores only). */
  reopen?: () => Promise<DocumentStore>;
}

function head(id: string, version = 0, overrides: Partial<DocumentHead> = {}): DocumentHead {
  return {
    id,
    name: `doc ${id.slice(-4)}`,
    type: "json",
    state: "active",
    ownerId: "alice",
    permissions: { editors: ["bob"], viewers: [], publicRead: false },
    version,
    createdAt: 1000,
    updatedAt: 1000 + version,
    metadata: { team: "core" },
    conflictStrategy: "merge",
    ...overrides,
  };
}

function op(documentId: string, version: number, sessionId = "s1"): OperationRecord {
  return {
    id: newId(),
    documentId,
    baseVersion: version - 1,
    version,
    authorId: "alice",
    sessionId,
    clientOpId: `c${version}`,
    timestamp: 2000 + version,
    op: [{ path: ["n"], action: { type: "increment", delta: version } }],
  };
}

function dedupeOf(record: OperationRecord): DedupeEntry {
  return {
    sessionId: record.sessionId,
    clientOpId: record.clientOpId,
    operationId: record.id,
    version: record.version,
    held: false,
    conflictIds: [],
  };
}

/** A commit request appending `count` ops after `from`. */
function appendRequest(id: string, from: number, count: number): CommitRequest {
  const ops = Array.from({ length: count }, (_, i) => op(id, from + i + 1));
  return {
    documentId: id,
    expectedVersion: from,
    head: head(id, from + count),
    ops,
    dedupe: ops.map(dedupeOf),
    conflicts: [],
  };
}

function conflict(documentId: string, state: ConflictRecord["state"]): ConflictRecord {
  const applied = op(documentId, 1);
  return {
    id: newId(),
    documentId,
    path: ["title"],
    strategy: state === "open" ? "manual" : "merge",
    state,
    applied,
    incoming: { ...op(documentId, 0, "s2"), version: 0 },
    appliedValue: "A",
    incomingValue: "B",
    ...(state === "open" ? {} : { resolvedValue: "A" }),
    createdAt: 3000,
  };
}

/** Register the shared store tests for one implementation. */
export function storeSuite(name: string, factory: () => Promise<StoreFixture>): void {
  const test = (title: string, fn: (fixture: StoreFixture) => Promise<void>) =>
    Deno.test(`${name}: ${title}`, async () => {
      await using fixture = await factory();
      await fn(fixture);
    });

  test("creates a document and reads back its head and initial snapshot", async ({ store }) => {
    const id = newId();
    await store.createDocument(head(id), { title: "hello", n: 0 });
    assert.deepEqual(await store.getHead(id), head(id));
    assert.deepEqual(await store.getSnapshot(id, 0), {
      version: 0,
      content: { title: "hello", n: 0 },
    });
    assert.equal(await store.getHead(newId()), null);
  });

  test("refuses to create a document twice with ALREADY_EXISTS", async ({ store }) => {
    const id = newId();
    await store.createDocument(head(id), {});
    await assert.rejects(
      store.createDocument(head(id, 0, { name: "other" }), {}),
      (e) => e instanceof AppError && e.status === "ALREADY_EXISTS",
    );
    assert.equal((await store.getHead(id))?.name, head(id).name);
  });

  test("commits ops checked on the version and refuses a stale one", async ({ store }) => {
    const id = newId();
    await store.createDocument(head(id), { n: 0 });
    assert.deepEqual(await store.commit([appendRequest(id, 0, 3)]), ["committed"]);
    assert.equal((await store.getHead(id))?.version, 3);
    // A writer that still believes the document is at version 1 loses.
    const stale = appendRequest(id, 1, 1);
    assert.deepEqual(await store.commit([stale]), ["version_conflict"]);
    assert.equal((await store.getHead(id))?.version, 3);
    const ops = await store.getOps(id, 0, 10);
    assert.deepEqual(ops.map((o) => o.version), [1, 2, 3]);
    assert.ok(!ops.some((o) => o.id === stale.ops[0]!.id));
    assert.equal(await store.findDedupe(id, "s1", "c2").then((d) => d?.version), 2);
  });

  test("commits a batch of documents independently: one loses, others commit", async ({ store }) => {
    const ids = [newId(), newId(), newId()];
    for (const id of ids) await store.createDocument(head(id), {});
    const outcomes = await store.commit([
      appendRequest(ids[0]!, 0, 2),
      appendRequest(ids[1]!, 5, 1), // wrong expected version
      appendRequest(ids[2]!, 0, 1),
    ]);
    assert.deepEqual(outcomes, ["committed", "version_conflict", "committed"]);
    assert.equal((await store.getHead(ids[0]!))?.version, 2);
    assert.equal((await store.getHead(ids[1]!))?.version, 0);
    assert.deepEqual(await store.getOps(ids[1]!, 0, 10), []);
    assert.equal((await store.getHead(ids[2]!))?.version, 1);
  });

  test("reports a commit for an unknown document as a version conflict", async ({ store }) => {
    const id = newId();
    assert.deepEqual(await store.commit([appendRequest(id, 0, 1)]), ["version_conflict"]);
    assert.equal(await store.getHead(id), null);
  });

  test("commits past one transaction's limits: 150 documents and 700 ops", async ({ store }) => {
    const ids = Array.from({ length: 150 }, () => newId());
    for (const id of ids) await store.createDocument(head(id), {});
    const outcomes = await store.commit(ids.map((id) => appendRequest(id, 0, 3)));
    assert.ok(outcomes.every((o) => o === "committed"));
    const big = appendRequest(ids[0]!, 3, 700);
    assert.deepEqual(await store.commit([big]), ["committed"]);
    const ops = await store.getOps(ids[0]!, 0, 1000);
    assert.deepEqual(ops.map((o) => o.version), Array.from({ length: 703 }, (_, i) => i + 1));
    assert.equal((await store.getHead(ids[149]!))?.version, 3);
    assert.equal((await store.findDedupe(ids[0]!, "s1", "c703"))?.version, 703);
  });

  test("reads history by version range (from exclusive, to inclusive) with a limit", async ({ store }) => {
    const id = newId();
    await store.createDocument(head(id), {});
    await store.commit([appendRequest(id, 0, 20)]);
    const versions = async (from: number, to: number, limit?: number) =>
      (await store.getOps(id, from, to, limit)).map((o) => o.version);
    assert.deepEqual(await versions(5, 8), [6, 7, 8]);
    assert.deepEqual(await versions(0, 20, 4), [1, 2, 3, 4]);
    assert.deepEqual(await versions(18, 100), [19, 20]);
    assert.deepEqual(await versions(20, 30), []);
    assert.deepEqual(await versions(8, 5), []);
    assert.deepEqual(await store.getOps(newId(), 0, 10), []);
  });

  test("keeps snapshots and finds the nearest one at or below a version", async ({ store }) => {
    const id = newId();
    await store.createDocument(head(id), { n: 0 });
    await store.putSnapshot(id, { version: 100, content: { n: 100 } });
    await store.putSnapshot(id, { version: 200, content: { n: 200 } });
    assert.deepEqual(await store.getSnapshot(id, 150), { version: 100, content: { n: 100 } });
    assert.deepEqual(await store.getSnapshot(id, 99), { version: 0, content: { n: 0 } });
    assert.deepEqual(await store.getSnapshot(id, 1e9), { version: 200, content: { n: 200 } });
    assert.equal(await store.getSnapshot(newId(), 10), null);
  });

  test("stores snapshots larger than one storage value", async ({ store }) => {
    const id = newId();
    const text = "é漢".repeat(80_000); // ~400 KB of UTF-8
    const content: Json = { text, list: Array.from({ length: 2000 }, (_, i) => i) };
    await store.createDocument(head(id), content);
    assert.deepEqual(await store.getSnapshot(id, 0), { version: 0, content });
    await store.putSnapshot(id, { version: 7, content: { text: text + "!" } });
    assert.deepEqual((await store.getSnapshot(id, 7))?.content, { text: text + "!" });
  });

  test("stores conflicts with the commit, replaces them, and lists open or all", async ({ store }) => {
    const id = newId();
    await store.createDocument(head(id), {});
    const open = conflict(id, "open");
    const auto = conflict(id, "auto_resolved");
    const request = appendRequest(id, 0, 1);
    request.conflicts = [open, auto];
    request.dedupe.push({
      sessionId: "s2",
      clientOpId: "held-1",
      operationId: open.incoming.id,
      version: 0,
      held: true,
      conflictIds: [open.id],
    });
    await store.commit([request]);
    assert.deepEqual(await store.getConflict(id, open.id), open);
    const listOpen = await store.listConflicts(id, { limit: 10, includeResolved: false });
    assert.deepEqual(listOpen.map((c) => c.id), [open.id]);
    const all = await store.listConflicts(id, { limit: 10, includeResolved: true });
    assert.deepEqual(all.map((c) => c.id), [open.id, auto.id]);
    const page2 = await store.listConflicts(id, {
      limit: 10,
      includeResolved: true,
      after: open.id,
    });
    assert.deepEqual(page2.map((c) => c.id), [auto.id]);
    assert.deepEqual(await store.findDedupe(id, "s2", "held-1"), request.dedupe[1]);

    const resolved: ConflictRecord = {
      ...open,
      state: "resolved",
      resolvedValue: "B",
      resolvedAt: 4000,
      resolvedBy: "alice",
    };
    await store.commit([{
      documentId: id,
      expectedVersion: 1,
      head: head(id, 1),
      ops: [],
      dedupe: [],
      conflicts: [resolved],
    }]);
    assert.deepEqual(await store.getConflict(id, open.id), resolved);
    assert.deepEqual(await store.listConflicts(id, { limit: 10, includeResolved: false }), []);
    assert.equal(await store.getConflict(id, newId()), null);
  });

  test("stores a conflict larger than one storage value", async ({ store }) => {
    const id = newId();
    await store.createDocument(head(id), {});
    const big = { ...conflict(id, "auto_resolved"), appliedValue: "x".repeat(70_000) };
    await store.commit([{
      documentId: id,
      expectedVersion: 0,
      head: head(id),
      ops: [],
      dedupe: [],
      conflicts: [big],
    }]);
    assert.deepEqual(await store.getConflict(id, big.id), big);
    assert.deepEqual(await store.listConflicts(id, { limit: 5, includeResolved: true }), [big]);
  });

  test("finds dedupe entries by session and client op id only", async ({ store }) => {
    const id = newId();
    await store.createDocument(head(id), {});
    const request = appendRequest(id, 0, 2);
    await store.commit([request]);
    assert.deepEqual(await store.findDedupe(id, "s1", "c1"), dedupeOf(request.ops[0]!));
    assert.equal(await store.findDedupe(id, "s2", "c1"), null);
    assert.equal(await store.findDedupe(newId(), "s1", "c1"), null);
  });

  test("lists heads in id order with a cursor", async ({ store }) => {
    const ids = Array.from({ length: 7 }, () => newId());
    for (const id of ids) await store.createDocument(head(id), {});
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await store.listHeads(after === undefined ? { limit: 3 } : { limit: 3, after });
      if (page.length === 0) break;
      assert.ok(page.length <= 3);
      seen.push(...page.map((h) => h.id));
      after = page[page.length - 1]!.id;
    }
    assert.deepEqual(seen, [...ids].sort());
  });

  test("updates head attributes with a version-checked commit without ops", async ({ store }) => {
    const id = newId();
    await store.createDocument(head(id), {});
    const renamed = head(id, 0, { name: "renamed", state: "archived" });
    assert.deepEqual(
      await store.commit([{
        documentId: id,
        expectedVersion: 0,
        head: renamed,
        ops: [],
        dedupe: [],
        conflicts: [],
      }]),
      ["committed"],
    );
    assert.deepEqual(await store.getHead(id), renamed);
  });

  test("counts documents, operations and conflicts", async ({ store }) => {
    const a = newId();
    const b = newId();
    await store.createDocument(head(a), {});
    await store.createDocument(head(b), {});
    const request = appendRequest(a, 0, 4);
    request.conflicts = [conflict(a, "open"), conflict(a, "auto_resolved")];
    await store.commit([request, appendRequest(b, 0, 1)]);
    assert.deepEqual(await store.counts(), {
      documents: 2,
      operations: 5,
      conflicts: 2,
      openConflicts: 1,
    });
  });

  test("returns copies: changing a returned value does not change the store", async ({ store }) => {
    const id = newId();
    await store.createDocument(head(id), { list: [1] });
    const got = (await store.getHead(id))!;
    got.permissions.editors.push("mallory");
    const snap = (await store.getSnapshot(id, 0))!;
    (snap.content as { list: number[] }).list.push(2);
    assert.deepEqual((await store.getHead(id))?.permissions.editors, ["bob"]);
    assert.deepEqual((await store.getSnapshot(id, 0))?.content, { list: [1] });
  });

  test("keeps everything across a reopen (persistent stores)", async (fixture) => {
    if (fixture.reopen === undefined) return;
    const id = newId();
    await fixture.store.createDocument(head(id), { n: 0 });
    await fixture.store.commit([appendRequest(id, 0, 3)]);
    const again = await fixture.reopen();
    try {
      assert.equal((await again.getHead(id))?.version, 3);
      assert.equal((await again.getOps(id, 0, 3)).length, 3);
      // The reopened store has no cached versionstamps; its checks must still hold.
      assert.deepEqual(await again.commit([appendRequest(id, 2, 1)]), ["version_conflict"]);
      assert.deepEqual(await again.commit([appendRequest(id, 3, 1)]), ["committed"]);
      // And the first instance must now lose with its stale cache.
      assert.deepEqual(await fixture.store.commit([appendRequest(id, 3, 1)]), [
        "version_conflict",
      ]);
    } finally {
      await again.close();
    }
  });
}
