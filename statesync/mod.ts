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
export type { DocEvent, EventType, LockRecord, PresenceRecord } from "./events.ts";
export {
  type CloseReason,
  EventHub,
  type EventHubOptions,
  type HistorySource,
  type ResumeOptions,
  type SubscribeOptions,
  Subscription,
} from "./hub.ts";
export { type AcquireLockInput, LockManager, type LockManagerOptions } from "./locks.ts";
export { type PresenceInput, PresenceManager, type PresenceManagerOptions } from "./presence.ts";
export * from "./convert.ts";
export {
  type Documents,
  type RunningServer,
  startStateSyncServer,
  STATESYNC_SERVICE_NAME,
  StateSyncService,
  type StateSyncServiceOptions,
  toAppError,
} from "./server.ts";
export {
  LockConfigSchema,
  PresenceConfigSchema,
  type StateSyncConfig,
  StateSyncConfigSchema,
  SubscriberConfigSchema,
} from "./config.ts";
export {
  type StartStateSyncOptions,
  startStateSyncService,
  type StateSyncHandle,
} from "./service.ts";
