import { storeSuite } from "./_store_suite.ts";
import { MemorySessionStore } from "./memory_store.ts";

storeSuite("MemorySessionStore", () => {
  const store = new MemorySessionStore();
  return Promise.resolve({ store, [Symbol.asyncDispose]: () => store.close() });
});
