import { MemoryDocumentStore } from "./store_memory.ts";
import { storeSuite } from "./store_suite.ts";

storeSuite("MemoryDocumentStore", () => {
  const store = new MemoryDocumentStore();
  return Promise.resolve({ store, [Symbol.asyncDispose]: () => store.close() });
});
