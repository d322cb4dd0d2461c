/**
 * Private test helper for `durability_test.ts`: applies ops to one document in a Deno KV
 * file with several concurrent writers until killed, printing one line per event:
 * `send <clientOpId> <baseVersion>` before an apply and `ack <clientOpId> <opId> <version>`
 * after it is acknowledged (durable).
 *
 * Usage: `deno run -A _durability_child.ts <kvPath> <documentId> <sessionId> <writers>`
 * @module
 */
import { DocumentManager } from "./documents.ts";
import { KvDocumentStore } from "./store_kv.ts";

const [path, documentId, sessionId, writersArg] = Deno.args;
if (!path || !documentId || !sessionId) {
  throw new TypeError("Usage: _durability_child.ts <kvPath> <documentId> <sessionId> <writers>");
}
const writers = Number(writersArg ?? 8);
const encoder = new TextEncoder();
function emit(line: string): void {
  // Synchronous write: a line is out before the next step runs, so a kill cannot lose it.
  Deno.stdout.writeSync(encoder.encode(line + "\n"));
}

const store = await KvDocumentStore.open(path);
const manager = new DocumentManager(store, { snapshotEvery: 25 });
const start = (await manager.get("tester", documentId)).version;
emit(`ready ${start}`);
let next = 0;
await Promise.all(Array.from({ length: writers }, async () => {
  let base = start;
  for (;;) {
    const clientOpId = `${sessionId}-${next++}`;
    emit(`send ${clientOpId} ${base}`);
    const result = await manager.apply("tester", {
      documentId,
      baseVersion: base,
      sessionId,
      clientOpId,
      op: [
        { path: ["items"], action: { type: "list_insert", index: 0, value: clientOpId } },
        { path: ["count"], action: { type: "increment", delta: 1 } },
      ],
    });
    emit(`ack ${clientOpId} ${result.operation.id} ${result.version}`);
    base = result.version;
  }
}));
