/**
 * The distributed mode of the session service: with `storage: etcd` sessions live in
 * {@link EtcdSessionStore} (per-session leases, see its key layout under
 * `<prefix>/session/`) and the instance registers itself for discovery as
 * `<prefix>/services/session/<id>`.
 *
 * @example
 * ```ts
 * const etcd = await openEtcdSessions(config.etcd);
 * const manager = new SessionManager(etcd.store, {});
 * await etcd.register({ tcp: "127.0.0.1:50051", quantum: "" });
 * // ... on shutdown, after the manager is done:
 * await etcd.close();
 * ```
 * @module
 */
import { connectEtcd, type EtcdConfig } from "../kernel/etcd.ts";
import {
  registerService,
  type ServiceAddress,
  type ServiceRegistration,
} from "../kernel/discovery.ts";
import { type Logger, silentLogger } from "../kernel/mod.ts";
import { EtcdSessionStore } from "./etcd_store.ts";

/** The etcd-backed parts of one session instance. */
export interface EtcdSessions {
  /** The store; closing it also deregisters and closes the etcd connection. */
  readonly store: EtcdSessionStore;
  /** Register this instance for discovery (TTL 10 s, kept alive). */
  register(address: ServiceAddress): Promise<void>;
  /** Deregister and close the store and connection. Idempotent. */
  close(): Promise<void>;
}

/**
 * Connect to etcd and open the session store.
 * @throws {AppError} UNAVAILABLE with the endpoints when etcd cannot be reached
 */
export async function openEtcdSessions(
  config: Partial<EtcdConfig>,
  options: { logger?: Logger } = {},
): Promise<EtcdSessions> {
  const logger = options.logger ?? silentLogger;
  const etcd = await connectEtcd(config);
  let registration: ServiceRegistration | undefined;
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      await registration?.close();
      etcd.close();
    })();
    return closing;
  };
  /** A store whose close() also deregisters and closes the connection. */
  class OwnedStore extends EtcdSessionStore {
    override async close(): Promise<void> {
      await super.close();
      await close();
    }
  }
  const store = new OwnedStore(etcd);
  return {
    store,
    async register(address) {
      registration = await registerService(etcd, { service: "session", address, logger });
      logger.info("Registered for discovery", { key: registration.key });
    },
    async close() {
      await store.close();
    },
  };
}
