/**
 * statesync: public API.
 * @module
 */
export * from "./model.ts";
export {
  DocumentManager,
  type DocumentManagerOptions,
  type DocumentStats,
  type HistoryPage,
} from "./documents.ts";
export {
  checkContentSize,
  checkOpSize,
  DEFAULT_LIMITS,
  type Limits,
  LimitsSchema,
  resolveLimits,
} from "./limits.ts";
export type {
  CommitOutcome,
  CommitRequest,
  DedupeEntry,
  DocumentHead,
  DocumentStore,
  ListOptions,
  Snapshot,
  StoreCounts,
} from "./store.ts";
export { MemoryDocumentStore } from "./store_memory.ts";
export { KvDocumentStore, type KvDocumentStoreOptions } from "./store_kv.ts";
