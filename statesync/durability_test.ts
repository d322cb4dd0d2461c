import assert from "node:assert/strict";
import { seededRandom, tempDir } from "../kernel/testing.ts";
import { DocumentManager } from "./documents.ts";
import { apply as applyOp } from "./json0/mod.ts";
import type { Json, OperationRecord } from "./model.ts";
import { KvDocumentStore } from "./store_kv.ts";

const CHILD = new URL("./_durability_child.ts", import.meta.url).pathname;

interface Round {
  session: string;
  acked: Map<string, { opId: string; version: number }>;
  sent: Map<string, number>;
}

/** Run the child until it has acknowledged `killAfter` ops, then SIGKILL it. */
async function runChild(path: string, documentId: string, session: string, killAfter: number) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CHILD, path, documentId, session, "8"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const round: Round = { session, acked: new Map(), sent: new Map() };
  let killed = false;
  let buffer = "";
  const decoder = new TextDecoder();
  for await (const chunk of child.stdout) {
    buffer += decoder.decode(chunk, { stream: true });
    let newline;
    while ((newline = buffer.indexOf("\n")) !== -1) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      const [kind, id, a, b] = line.split(" ");
      if (kind === "send") round.sent.set(id!, Number(a));
      if (kind === "ack") round.acked.set(id!, { opId: a!, version: Number(b) });
    }
    if (!killed && round.acked.size >= killAfter) {
      child.kill("SIGKILL");
      killed = true;
    }
  }
  const status = await child.status;
  const stderr = new TextDecoder().decode(
    await new Response(child.stderr).arrayBuffer(),
  );
  assert.ok(killed, `child exited on its own (code ${status.code}): ${stderr}`);
  assert.equal(status.signal, "SIGKILL");
  return round;
}

Deno.test("every acknowledged op survives SIGKILL exactly once and the content equals the replay of history", async () => {
  const seed = Number(Deno.env.get("DURABILITY_SEED") ?? Date.now() % 1_000_000);
  const rand = seededRandom(seed);
  await using dir = await tempDir("statesync-durability-");
  const path = `${dir.path}/statesync.kv`;
  const documentId = await (async () => {
    await using store = await KvDocumentStore.open(path);
    const manager = new DocumentManager(store, {});
    const doc = await manager.create("tester", {
      name: "durable",
      type: "json",
      content: { items: [], count: 0 },
    });
    await manager.close();
    return doc.id;
  })();

  const rounds: Round[] = [];
  for (let r = 0; r < 3; r++) {
    const killAfter = 20 + Math.floor(rand() * 300);
    rounds.push(await runChild(path, documentId, `r${r}`, killAfter));
  }

  await using store = await KvDocumentStore.open(path);
  const manager = new DocumentManager(store, { snapshotEvery: 25 });
  try {
    const doc = await manager.get("tester", documentId);
    const history: OperationRecord[] = [];
    for (let from = 0; from < doc.version;) {
      const page = await manager.history("tester", documentId, {
        fromVersion: from,
        pageSize: 1000,
      });
      history.push(...page.operations);
      from = page.operations[page.operations.length - 1]!.version;
    }
    assert.deepEqual(
      history.map((o) => o.version),
      Array.from({ length: doc.version }, (_, i) => i + 1),
      `seed ${seed}: history has gaps`,
    );
    const byClientOp = new Map<string, OperationRecord[]>();
    for (const op of history) {
      const list = byClientOp.get(op.clientOpId) ?? [];
      list.push(op);
      byClientOp.set(op.clientOpId, list);
    }
    let acked = 0;
    for (const round of rounds) {
      for (const [clientOpId, ack] of round.acked) {
        acked++;
        const found = byClientOp.get(clientOpId) ?? [];
        assert.equal(
          found.length,
          1,
          `seed ${seed}: acked op ${clientOpId} found ${found.length}×`,
        );
        assert.equal(found[0]!.id, ack.opId, `seed ${seed}: op id of ${clientOpId}`);
        assert.equal(found[0]!.version, ack.version, `seed ${seed}: version of ${clientOpId}`);
      }
    }
    assert.ok(acked >= 60, `seed ${seed}: only ${acked} acks`);
    for (const [clientOpId, ops] of byClientOp) {
      assert.equal(ops.length, 1, `seed ${seed}: ${clientOpId} applied ${ops.length}×`);
    }
    let replayed: Json = (await manager.get("tester", documentId, 0)).content;
    for (const op of history) replayed = applyOp(replayed, op.op);
    assert.deepEqual(doc.content, replayed, `seed ${seed}: content differs from replay`);
    const content = doc.content as { items: string[]; count: number };
    assert.equal(content.count, doc.version);
    assert.equal(new Set(content.items).size, doc.version);

    // A client reconnecting resends everything it never saw acknowledged (and some it did):
    // each is applied at most once.
    for (const round of rounds) {
      const acks = [...round.acked.keys()].slice(0, 5);
      const unacked = [...round.sent.keys()].filter((id) => !round.acked.has(id));
      for (const clientOpId of [...acks, ...unacked]) {
        const result = await manager.apply("tester", {
          documentId,
          baseVersion: round.sent.get(clientOpId)!,
          sessionId: round.session,
          clientOpId,
          op: [
            { path: ["items"], action: { type: "list_insert", index: 0, value: clientOpId } },
            { path: ["count"], action: { type: "increment", delta: 1 } },
          ],
        });
        if (round.acked.has(clientOpId) || byClientOp.has(clientOpId)) {
          assert.equal(result.duplicate, true, `seed ${seed}: resend of ${clientOpId}`);
        } else {
          assert.equal(result.duplicate, false);
        }
      }
    }
    const after = await manager.get("tester", documentId);
    const items = (after.content as { items: string[] }).items;
    assert.equal(new Set(items).size, items.length, `seed ${seed}: an op was applied twice`);
    assert.equal((after.content as { count: number }).count, after.version);
  } finally {
    await manager.close();
  }
});
