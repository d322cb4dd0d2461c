import assert from "node:assert/strict";
import { connectEtcd } from "../kernel/etcd.ts";
import { DocumentManager } from "./documents.ts";
import { apply, type Json, type Op } from "./json0/mod.ts";
import { ETCD_BINARY, type EtcdServer, needs, startEtcd } from "../kernel/testing.ts";
import { EtcdDocumentStore } from "./store_etcd.ts";
import { storeSuite } from "./store_suite.ts";

const tools = needs(ETCD_BINARY);

/** One etcd for the whole file (started on first use); each test gets its own prefix. */
let shared: Promise<EtcdServer> | undefined;
function server(): Promise<EtcdServer> {
  shared ??= startEtcd();
  return shared;
}

async function open(prefix: string): Promise<EtcdDocumentStore> {
  const etcd = await connectEtcd({ endpoints: [(await server()).endpoint], prefix });
  return new EtcdDocumentStore(etcd, { ownsConnection: true });
}

if (tools.ignore) {
  Deno.test({ name: "EtcdDocumentStore: shared store suite" + tools.note, ignore: true, fn() {} });
} else {
  storeSuite("EtcdDocumentStore", async () => {
    const prefix = `/test/${crypto.randomUUID()}`;
    const store = await open(prefix);
    return {
      store,
      reopen: () => open(prefix),
      [Symbol.asyncDispose]: () => store.close(),
    };
  });
}

Deno.test({
  name: "two DocumentManagers on one etcd: 20 writers at stale versions converge with no " +
    "version gaps or duplicates" + tools.note,
  ignore: tools.ignore,
  async fn() {
    const prefix = `/converge/${crypto.randomUUID()}`;
    const stores = [await open(prefix), await open(prefix)];
    const managers = stores.map((store) => new DocumentManager(store, { maxRetries: 200 }));
    try {
      const doc = await managers[0]!.create("alice", {
        name: "shared",
        type: "json",
        content: { text: "", n: 0, list: [] },
        permissions: { editors: Array.from({ length: 20 }, (_, i) => `w${i}`) },
      });
      const perWriter = 5;
      await Promise.all(Array.from({ length: 20 }, async (_, w) => {
        const manager = managers[w % 2]!;
        let seen = 0;
        for (let i = 0; i < perWriter; i++) {
          const op: Op = [
            { path: ["text"], action: { type: "text_insert", offset: 0, text: `${w}.${i};` } },
            { path: ["n"], action: { type: "increment", delta: 1 } },
            { path: ["list"], action: { type: "list_insert", index: 0, value: `${w}.${i}` } },
          ];
          // Every writer stays behind: it only ever knows the version of its previous ack.
          const result = await manager.apply(`w${w}`, {
            documentId: doc.id,
            baseVersion: seen,
            sessionId: `s${w}`,
            clientOpId: `c${i}`,
            op,
          });
          assert.equal(result.duplicate, false);
          seen = Math.max(0, result.version - 3);
        }
      }));
      // A third instance that never saw the writes reads the outcome from etcd.
      const reader = await open(prefix);
      const fresh = new DocumentManager(reader);
      try {
        const final = await fresh.get("alice", doc.id);
        assert.equal(final.version, 20 * perWriter);
        const history = await reader.getOps(doc.id, 0, final.version);
        assert.deepEqual(
          history.map((o) => o.version),
          Array.from({ length: 100 }, (_, i) => i + 1),
        );
        let replay: Json = { text: "", n: 0, list: [] };
        for (const record of history) replay = apply(replay, record.op);
        assert.deepEqual(final.content, replay);
        const content = final.content as { text: string; n: number; list: string[] };
        assert.equal(content.n, 100);
        assert.equal(content.list.length, 100);
        assert.equal(new Set(content.list).size, 100);
        assert.equal(content.text.split(";").length - 1, 100);
      } finally {
        await fresh.close();
        await reader.close();
      }
    } finally {
      for (const manager of managers) await manager.close();
      for (const store of stores) await store.close();
    }
  },
});

// Runs last (tests in a file run in order): stop the shared server.
Deno.test({
  name: "EtcdDocumentStore: stop the shared etcd" + tools.note,
  ignore: tools.ignore,
  async fn() {
    await (await shared)?.stop();
  },
});
