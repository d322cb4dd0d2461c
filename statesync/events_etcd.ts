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
 *   how presence is shared across instances. One key per document and instance, overwritten
 *   each time, so keys stay bounded and vanish with the instance's lease.
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
 * const presence = new PresenceManager({ events: bridge });
 * const locks = await EtcdLockManager.open(etcd, { events: hub });
 * ```
 * @module
 */
import { Buffer } from "node:buffer";
import type { IKeyValue, Lease, Watcher } from "etcd3";
import { type Logger, newId, silentLogger } from "../kernel/mod.ts";
import { type EtcdConnection, prefixEnd } from "../kernel/etcd.ts";
import type { DocEvent } from "./events.ts";
import type { EventSink } from "./model.ts";
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
  logger?: Logger;
}

/** An {@link EventSink} that fans events out to every instance through etcd. */
export class EtcdEventBridge implements EventSink {
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
  #closed = false;

  private constructor(etcd: EtcdConnection, hub: EventSink, options: EtcdEventBridgeOptions) {
    this.#etcd = etcd;
    this.#hub = hub;
    this.#store = options.store;
    this.#prefix = (options.prefix ?? etcd.key("statesync", "events")).replace(/\/+$/, "");
    this.#instanceId = options.instanceId ?? newId();
    this.#logger = options.logger ?? silentLogger;
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
    events.on("put", (kv) => bridge.#event(kv));
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

  /** Stop watching and remove this instance's event keys. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#pending]);
    for (const watcher of this.#watchers) await watcher.cancel();
    await this.#lease?.revoke().catch(() => {});
    this.#listeners.clear();
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

  #event(kv: IKeyValue): void {
    if (this.#closed) return;
    try {
      this.#hub.publish(JSON.parse(kv.value.toString()) as DocEvent);
    } catch (error) {
      this.#logger.warn("Dropped a malformed shared event", { error: String(error) });
    }
  }
}
