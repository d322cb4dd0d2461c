import { tempDir } from "../kernel/testing.ts";
import { KvDocumentStore } from "./store_kv.ts";
import { storeSuite } from "./store_suite.ts";

storeSuite("KvDocumentStore", async () => {
  const dir = await tempDir("statesync-kv-");
  const path = `${dir.path}/store.kv`;
  const store = await KvDocumentStore.open(path);
  return {
    store,
    reopen: () => KvDocumentStore.open(path),
    async [Symbol.asyncDispose]() {
      await store.close();
      await dir[Symbol.asyncDispose]();
    },
  };
});
