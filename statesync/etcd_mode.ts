/**
 * The distributed mode of the StateSync service in one place: with `storage: etcd` the
 * service keeps documents in {@link EtcdDocumentStore}, locks in {@link EtcdLockManager},
 * fans events out to every instance with {@link EtcdEventBridge}, and registers itself for
 * discovery as `<prefix>/services/statesync/<id>`.
 *
 * Key layout under the configured etcd prefix `R` (default `/aetherflow`):
 * `R/statesync/{ver,head,op,dedupe,conflict,snap,snapchunk}/...` (documents, see
 * `store_etcd.ts`), `R/statesync/locks/<doc>/<lockId>` (locks), `R/statesync/events/<doc>/
 * <instance>` (shared non-operation events), `R/services/statesync/<instance>` (discovery).
 *
 * @example
 * ```ts
 * const etcd = await openEtcdStateSync(config.etcd, hub, { locks: config.locks });
 * const documents = new DocumentManager(etcd.store, { events: etcd.events, locks: etcd.locks });
 * const presence = new PresenceManager({ events: etcd.events, remote: etcd.presence });
 * etcd.follow(documents);
 * await etcd.register({ tcp: "127.0.0.1:50052", quantum: "" });
 * // ... on shutdown:
 * await etcd.close();
 * ```
 * @module
 */
import { connectEtcd, type EtcdConfig, type EtcdConnection } from "../kernel/etcd.ts";
import {
  registerService,
  type ServiceAddress,
  type ServiceRegistration,
} from "../kernel/discovery.ts";
import { type Logger, silentLogger } from "../kernel/mod.ts";
import { EtcdEventBridge } from "./events_etcd.ts";
import { EtcdLockManager, type EtcdLockManagerOptions } from "./lock_etcd.ts";
import type { EventSink } from "./model.ts";
import type { PresenceSource } from "./presence.ts";
import { EtcdDocumentStore } from "./store_etcd.ts";

/** Options for {@link openEtcdStateSync}. */
export interface EtcdStateSyncOptions {
  /** Lock settings (TTL and wait limits), as for the in-memory lock manager. */
  locks?: Omit<EtcdLockManagerOptions, "prefix" | "events">;
  /** The document version stamped on lock events. */
  versionOf?: (documentId: string) => number;
  /** This instance's id (discovery and event channel; default: a new UUIDv7). */
  instanceId?: string;
  logger?: Logger;
}

/** The etcd-backed parts of one StateSync instance. */
export interface EtcdStateSync {
  readonly etcd: EtcdConnection;
  readonly store: EtcdDocumentStore;
  readonly locks: EtcdLockManager;
  /** The sink for the document engine and presence (shares events with other instances). */
  readonly events: EventSink;
  /** Other instances' presence, for `PresenceManager`'s `remote` option. */
  readonly presence: PresenceSource;
  /**
   * Let `documents` drop a cached document when another instance commits past it (it must
   * have an `invalidate(documentId, version)` method; without one this does nothing).
   */
  follow(documents: object): void;
  /** Register this instance for discovery (TTL 10 s, kept alive). */
  register(address: ServiceAddress): Promise<void>;
  /** Deregister, stop watching, close the connection. Idempotent. */
  close(): Promise<void>;
}

/**
 * Connect to etcd and build the store, lock manager and event bridge.
 * @throws {AppError} UNAVAILABLE with the endpoints when etcd cannot be reached
 */
export async function openEtcdStateSync(
  config: Partial<EtcdConfig>,
  hub: EventSink,
  options: EtcdStateSyncOptions = {},
): Promise<EtcdStateSync> {
  const logger = options.logger ?? silentLogger;
  const etcd = await connectEtcd(config);
  const store = new EtcdDocumentStore(etcd);
  let locks: EtcdLockManager | undefined;
  let bridge: EtcdEventBridge | undefined;
  try {
    locks = await EtcdLockManager.open(etcd, {
      ...options.locks,
      events: hub,
      ...(options.versionOf ? { versionOf: options.versionOf } : {}),
    });
    bridge = await EtcdEventBridge.open(etcd, hub, {
      store,
      logger,
      ...(options.instanceId ? { instanceId: options.instanceId } : {}),
    });
  } catch (error) {
    await locks?.close();
    etcd.close();
    throw error;
  }
  const events = bridge;
  let registration: ServiceRegistration | undefined;
  let unfollow: (() => void) | undefined;
  let closing: Promise<void> | undefined;
  return {
    etcd,
    store,
    locks,
    events,
    presence: events,
    follow(documents) {
      const target = documents as { invalidate?: (id: string, version: number) => void };
      if (typeof target.invalidate !== "function") return;
      unfollow?.();
      unfollow = events.onOperation((id, version) => target.invalidate!(id, version));
    },
    async register(address) {
      registration = await registerService(etcd, {
        service: "statesync",
        address,
        id: events.instanceId,
        logger,
      });
      logger.info("Registered for discovery", { key: registration.key });
    },
    close() {
      closing ??= (async () => {
        unfollow?.();
        await registration?.close();
        await events.close();
        await locks.close();
        await store.close();
        etcd.close();
      })();
      return closing;
    },
  };
}
