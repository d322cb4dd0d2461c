/**
 * Cross-instance event fan-out for StateSync instances sharing one etcd
 * ({@link EtcdDocumentStore}): subscribers connected to any instance receive every event of
 * their document.
 *
 * - **Operations** are not sent by the instance that committed them: every instance (the
 *   committing one included) watches the store's operation prefix `P/op/` and turns each
 *   new operation row into an `operation_applied` event for its local hub. An operation row
 *   is written exactly once, by the one transaction that won its version, and etcd delivers
 *   watch events in revision order, so each hub sees every document's operations in version
 *   order, without gaps or duplicates.
 * - **Other events** (document_updated, conflicts, presence, joins/leaves) published by the
 *   local engine go to `E/<doc>/<instance>` (JSON, on the instance's lease, default prefix
 *   `/aetherflow/statesync/events`); every instance's watch delivers them to its hub. This is
 *   how presence events are shared across instances. One key per document and instance,
 *   overwritten each time, so keys stay bounded and vanish with the instance's lease.
 * - **Presence records** of other instances are mirrored from their presence_updated and
 *   user_left events (bounded, see `maxRemotePresence`) and listed by
 *   {@link EtcdEventBridge.list}, a {@link PresenceSource} for `PresenceManager`'s `remote`
 *   option, so GetPresence on any instance sees presence set on another. Records leave the
 *   mirror when cleared, at their `expiresAt`, or when the other instance's event key goes
 *   (its close, or its lease running out). Presence set before this instance started is not
 *   mirrored until it is next updated.
 * - Lock events come from {@link EtcdLockManager}'s own watch: give it the hub directly.
 *
 * {@link EtcdEventBridge.onOperation} lets the caller react to operations committed
 * elsewhere (e.g. drop a stale cached document).
 *
 * @example
 * ```ts
 * const hub = new EventHub();
 * const bridge = await EtcdEventBridge.open(etcd, hub, { store });
 * const documents = new DocumentManager(store, { events: bridge });
 * const presence = new PresenceManager({ events: bridge, remote: bridge });
 * const locks = await EtcdLockManager.open(etcd, { events: hub });
 * ```
 * @module
 */
import { Buffer } from "node:buffer";
import type { IKeyValue, Lease, Watcher } from "etcd3";
import { type Logger, newId, silentLogger } from "../kernel/mod.ts";
import { type EtcdConnection, prefixEnd } from "../kernel/etcd.ts";
import type { DocEvent, PresenceRecord } from "./events.ts";
import type { EventSink } from "./model.ts";
import type { PresenceSource } from "./presence.ts";
import type { EtcdDocumentStore } from "./store_etcd.ts";

/** Options for {@link EtcdEventBridge.open}. */
export interface EtcdEventBridgeOptions {
  /** The shared document store (its operation rows are watched). */
  store: EtcdDocumentStore;
  /** Prefix of the event channel (default `<connection prefix>/statesync/events`). */
  prefix?: string;
  /** This instance's id (default: a new UUIDv7). */
  instanceId?: string;
  /** TTL of the instance's event keys, seconds (default 10, kept alive). */
  ttlSeconds?: number;
  /**
   * Most presence records of other instances kept (default 10000); beyond it the records
   * mirrored longest ago go first.
   */
  maxRemotePresence?: number;
  logger?: Logger;
}

/**
 * An {@link EventSink} that fans events out to every instance through etcd, and a
 * {@link PresenceSource} of the other instances' presence.
 */
export class EtcdEventBridge implements EventSink, PresenceSource {
  #etcd: EtcdConnection;
  #hub: EventSink;
  #store: EtcdDocumentStore;
  #prefix: string;
  #instanceId: string;
  #logger: Logger;
  #lease: Lease | undefined;
  #watchers: Watcher[] = [];
  #listeners = new Set<(documentId: string, version: number) => void>();
  #pending = new Set<Promise<unknown>>();
  /** Other instances' presence: document → `<instance>/<user>` → record. */
  #remote = new Map<string, Map<string, PresenceRecord>>();
  #remoteCount = 0;
  #maxRemote: number;
  #closed = false;

  private constructor(etcd: EtcdConnection, hub: EventSink, options: EtcdEventBridgeOptions) {
    this.#etcd = etcd;
    this.#hub = hub;
    this.#store = options.store;
    this.#prefix = (options.prefix ?? etcd.key("statesync", "events")).replace(/\/+$/, "");
    this.#instanceId = options.instanceId ?? newId();
    this.#logger = options.logger ?? silentLogger;
    this.#maxRemote = options.maxRemotePresence ?? 10_000;
  }

  /** Start watching operations and the event channel; events flow into `hub`. */
  static async open(
    etcd: EtcdConnection,
    hub: EventSink,
    options: EtcdEventBridgeOptions,
  ): Promise<EtcdEventBridge> {
    const bridge = new EtcdEventBridge(etcd, hub, options);
    bridge.#lease = etcd.client.lease(options.ttlSeconds ?? 10);
    await bridge.#lease.grant();
    const opRoot = `${options.store.prefix}/op/`;
    const eventRoot = `${bridge.#prefix}/`;
    // One read fixes the revision both watches start after.
    const head = await etcd.client.kv.range({
      key: Buffer.from(opRoot),
      range_end: prefixEnd(opRoot),
      count_only: true,
    });
    const start = String(Number(head.header.revision) + 1);
    const ops = await etcd.client.watch().prefix(opRoot).startRevision(start).create();
    ops.on("put", (kv) => bridge.#operation(opRoot, kv));
    const events = await etcd.client.watch().prefix(eventRoot).startRevision(start).create();
    events.on("put", (kv) => bridge.#event(eventRoot, kv));
    events.on("delete", (kv) => bridge.#instanceGone(eventRoot, kv));
    for (const watcher of [ops, events]) {
      watcher.on(
        "error",
        (error) => bridge.#logger.error("Event watch failed", { error: String(error) }),
      );
    }
    bridge.#watchers = [ops, events];
    return bridge;
  }

  /** This instance's id in the event channel. */
  get instanceId(): string {
    return this.#instanceId;
  }

  /**
   * Publish an event of the local engine: operations are skipped (the operation watch
   * delivers them to every instance), everything else goes through etcd.
   */
  publish(event: DocEvent): void {
    if (this.#closed || event.type === "operation_applied") return;
    const key = `${this.#prefix}/${encodeURIComponent(event.documentId)}/${this.#instanceId}`;
    const task = this.#lease!.put(key).value(JSON.stringify(event)).exec()
      .catch((error) => {
        this.#logger.error("Could not share an event; delivering it locally only", {
          type: event.type,
          documentId: event.documentId,
          error: String(error),
        });
        this.#hub.publish(event);
      })
      .finally(() => this.#pending.delete(task));
    this.#pending.add(task);
  }

  /** Call `listener(documentId, version)` for every operation seen; returns an unsubscribe. */
  onOperation(listener: (documentId: string, version: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Other instances' presence records of `documentId` that are live at `now` (epoch ms). */
  list(documentId: string, now: number): PresenceRecord[] {
    const records = this.#remote.get(documentId);
    if (records === undefined) return [];
    const out: PresenceRecord[] = [];
    for (const [key, record] of records) {
      if (record.expiresAt > now) out.push(record);
      else this.#forget(documentId, records, key);
    }
    return out;
  }

  /** Stop watching and remove this instance's event keys. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#pending]);
    for (const watcher of this.#watchers) await watcher.cancel();
    await this.#lease?.revoke().catch(() => {});
    this.#listeners.clear();
    this.#remote.clear();
    this.#remoteCount = 0;
  }

  #operation(root: string, kv: IKeyValue): void {
    if (this.#closed) return;
    const [encodedId, version] = kv.key.toString().slice(root.length).split("/");
    if (encodedId === undefined || version === undefined) return;
    const documentId = decodeURIComponent(encodedId);
    const operation = this.#store.decodeOpEntry(
      documentId,
      kv.key.toString(),
      kv.value.toString(),
    );
    // Listeners first: a cached copy is dropped before any subscriber hears of the version.
    for (const listener of [...this.#listeners]) listener(documentId, operation.version);
    this.#hub.publish({
      type: "operation_applied",
      documentId,
      version: operation.version,
      timestamp: operation.timestamp,
      userId: operation.authorId,
      operation,
    });
  }

  #event(root: string, kv: IKeyValue): void {
    if (this.#closed) return;
    let event: DocEvent;
    try {
      event = JSON.parse(kv.value.toString()) as DocEvent;
    } catch (error) {
      this.#logger.warn("Dropped a malformed shared event", { error: String(error) });
      return;
    }
    const instance = kv.key.toString().slice(root.length).split("/")[1];
    if (instance !== undefined && instance !== this.#instanceId) this.#mirror(instance, event);
    this.#hub.publish(event);
  }

  /** Keep another instance's presence records up to date from its events. */
  #mirror(instance: string, event: DocEvent): void {
    if (event.type !== "presence_updated" && event.type !== "user_left") return;
    const key = `${instance}/${event.userId}`;
    let records = this.#remote.get(event.documentId);
    if (records?.has(key)) this.#forget(event.documentId, records, key);
    const record = event.presence;
    if (
      event.type === "user_left" || record === undefined || record.expiresAt <= record.updatedAt
    ) {
      return;
    }
    if (this.#remoteCount >= this.#maxRemote) this.#evictOldest();
    if (records === undefined || !this.#remote.has(event.documentId)) {
      records = new Map();
      this.#remote.set(event.documentId, records);
    }
    records.set(key, record);
    this.#remoteCount++;
  }

  /** Another instance's event key of a document is gone: drop its presence there. */
  #instanceGone(root: string, kv: IKeyValue): void {
    const [encodedId, instance] = kv.key.toString().slice(root.length).split("/");
    if (encodedId === undefined || instance === undefined) return;
    const documentId = decodeURIComponent(encodedId);
    const records = this.#remote.get(documentId);
    if (records === undefined) return;
    for (const key of [...records.keys()]) {
      if (key.startsWith(`${instance}/`)) this.#forget(documentId, records, key);
    }
  }

  #forget(documentId: string, records: Map<string, PresenceRecord>, key: string): void {
    if (!records.delete(key)) return;
    this.#remoteCount--;
    if (records.size === 0) this.#remote.delete(documentId);
  }

  #evictOldest(): void {
    for (const [documentId, records] of this.#remote) {
      const key = records.keys().next().value;
      if (key !== undefined) return this.#forget(documentId, records, key);
    }
  }
}
