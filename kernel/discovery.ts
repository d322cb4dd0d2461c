/**
 * Service discovery on etcd, as go-zero's `core/discov` does it (REFERENCES.md): each
 * service instance registers `<prefix>/<service>/<id>` → `{"tcp": "host:port", "quantum":
 * "host:port"}` on a lease (TTL 10 s) kept alive by the etcd client, and registers again on
 * a new lease when the keepalive is lost; a resolver reads the prefix and watches it from the
 * read revision + 1, so an instance that stops (or dies: its lease runs out) is dropped within
 * the TTL. {@link ServiceResolver.bind} feeds the instances to a balancer (e.g. the gateway's
 * `P2cBalancer`). Imported directly (`kernel/discovery.ts`), like `kernel/etcd.ts`.
 *
 * @example
 * ```ts
 * const registration = await registerService(etcd, {
 *   service: "statesync",
 *   address: { tcp: "10.0.0.5:50052", quantum: "10.0.0.5:50062" },
 * });
 * const resolver = await ServiceResolver.open(etcd, "statesync");
 * const balancer = new P2cBalancer<ServiceInstance>(); // gateway/p2c.ts
 * const unbind = resolver.bind(balancer);
 * // ... balancer.pick() ...
 * unbind();
 * await resolver.close();
 * await registration.close();
 * ```
 * @module
 */
import { Buffer } from "node:buffer";
import type { Lease, Watcher } from "etcd3";
import { newId } from "./ids.ts";
import { type Logger, silentLogger } from "./log.ts";
import { type EtcdConnection, prefixEnd } from "./etcd.ts";

/** Default lease TTL of a registration, seconds. */
export const REGISTRATION_TTL_SECONDS = 10;

/** Where one instance listens. */
export interface ServiceAddress {
  /** host:port of the TCP gRPC listener. */
  tcp: string;
  /** host:port of the Quantum listener ("" when it has none). */
  quantum: string;
}

/** One registered instance. */
export interface ServiceInstance extends ServiceAddress {
  /** The instance id (last key segment). */
  id: string;
}

/** Options for {@link registerService}. */
export interface RegisterOptions {
  /** Service name, e.g. "statesync". */
  service: string;
  address: ServiceAddress;
  /** Instance id (default: a new UUIDv7). */
  id?: string;
  /** Key prefix (default `<connection prefix>/services`). */
  prefix?: string;
  /** Lease TTL in seconds (default 10). */
  ttlSeconds?: number;
  logger?: Logger;
}

/** A live registration. */
export interface ServiceRegistration {
  /** The registered key. */
  readonly key: string;
  readonly id: string;
  /** How many times the instance registered (1 + re-registrations after lost leases). */
  readonly registrations: number;
  /** Resolves the next time the instance registers again after losing its lease. */
  reregistered(): Promise<void>;
  /** Remove the registration (revokes the lease). Idempotent. */
  close(): Promise<void>;
}

/**
 * Register an instance under `<prefix>/<service>/<id>` with a kept-alive lease.
 * @throws {Error} from etcd when the first registration fails
 */
export async function registerService(
  etcd: EtcdConnection,
  options: RegisterOptions,
): Promise<ServiceRegistration> {
  const prefix = (options.prefix ?? etcd.key("services")).replace(/\/+$/, "");
  const id = options.id ?? newId();
  const key = `${prefix}/${encodeURIComponent(options.service)}/${encodeURIComponent(id)}`;
  const ttl = options.ttlSeconds ?? REGISTRATION_TTL_SECONDS;
  const logger = options.logger ?? silentLogger;
  const value = JSON.stringify({ tcp: options.address.tcp, quantum: options.address.quantum });
  let lease: Lease | undefined;
  let closed = false;
  let registrations = 0;
  let waiters: (() => void)[] = [];
  let retry: ReturnType<typeof setTimeout> | undefined;

  const register = async (): Promise<void> => {
    const next = etcd.client.lease(ttl);
    next.on("lost", (error) => {
      if (closed || lease !== next) return;
      logger.warn("Service registration lost its lease; registering again", {
        key,
        error: String(error),
      });
      schedule(0);
    });
    try {
      await next.put(key).value(value);
    } catch (error) {
      next.release();
      await next.revoke().catch(() => {});
      throw error;
    }
    if (closed) {
      await next.revoke().catch(() => {});
      return;
    }
    lease = next;
    registrations++;
    const woken = waiters;
    waiters = [];
    for (const wake of woken) wake();
  };

  const schedule = (delayMs: number) => {
    if (closed || retry !== undefined) return;
    retry = setTimeout(async () => {
      retry = undefined;
      const old = lease;
      lease = undefined;
      old?.release();
      try {
        await register();
      } catch (error) {
        logger.warn("Service registration failed; retrying", { key, error: String(error) });
        schedule(Math.min(5000, Math.max(200, delayMs * 2)));
      }
    }, delayMs);
  };

  await register();
  return {
    key,
    id,
    get registrations() {
      return registrations;
    },
    reregistered() {
      return new Promise<void>((resolve) => waiters.push(resolve));
    },
    async close() {
      if (closed) return;
      closed = true;
      if (retry !== undefined) clearTimeout(retry);
      const current = lease;
      lease = undefined;
      await current?.revoke().catch(() => {});
    },
  };
}

/** Options for {@link ServiceResolver.open}. */
export interface ResolverOptions {
  /** Key prefix (default `<connection prefix>/services`). */
  prefix?: string;
}

/** The live set of a service's instances: get, then watch from the read revision + 1. */
export class ServiceResolver {
  #prefix: string;
  #instances = new Map<string, ServiceInstance>();
  #listeners = new Set<(instances: ServiceInstance[]) => void>();
  #watcher: Watcher | undefined;

  private constructor(prefix: string) {
    this.#prefix = prefix;
  }

  /** Read the service's instances and start watching for changes. */
  static async open(
    etcd: EtcdConnection,
    service: string,
    options: ResolverOptions = {},
  ): Promise<ServiceResolver> {
    const root = (options.prefix ?? etcd.key("services")).replace(/\/+$/, "");
    const resolver = new ServiceResolver(`${root}/${encodeURIComponent(service)}/`);
    const response = await etcd.client.kv.range({
      key: Buffer.from(resolver.#prefix),
      range_end: prefixEnd(resolver.#prefix),
    });
    for (const kv of response.kvs) resolver.#put(kv.key.toString(), kv.value.toString());
    const watcher = await etcd.client.watch().prefix(resolver.#prefix)
      .startRevision(String(Number(response.header.revision) + 1)).create();
    watcher.on("put", (kv) => {
      resolver.#put(kv.key.toString(), kv.value.toString());
      resolver.#notify();
    });
    watcher.on("delete", (kv) => {
      const id = decodeURIComponent(kv.key.toString().slice(resolver.#prefix.length));
      if (resolver.#instances.delete(id)) resolver.#notify();
    });
    resolver.#watcher = watcher;
    return resolver;
  }

  /** The instances known now, in id order. */
  instances(): ServiceInstance[] {
    return [...this.#instances.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  /** Call `listener` with the full instance list after every change; returns an unsubscribe. */
  onChange(listener: (instances: ServiceInstance[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves with the instance list once `predicate` holds (checked now and on changes). */
  waitFor(predicate: (instances: ServiceInstance[]) => boolean): Promise<ServiceInstance[]> {
    const now = this.instances();
    if (predicate(now)) return Promise.resolve(now);
    return new Promise((resolve) => {
      const off = this.onChange((instances) => {
        if (!predicate(instances)) return;
        off();
        resolve(instances);
      });
    });
  }

  /** Keep `balancer`'s nodes equal to the instances; returns an unbind function. */
  bind(balancer: { update(nodes: { id: string; value: ServiceInstance }[]): void }): () => void {
    const update = (instances: ServiceInstance[]) =>
      balancer.update(instances.map((instance) => ({ id: instance.id, value: instance })));
    update(this.instances());
    return this.onChange(update);
  }

  /** Stop watching. */
  async close(): Promise<void> {
    this.#listeners.clear();
    await this.#watcher?.cancel();
  }

  #put(key: string, value: string): void {
    const id = decodeURIComponent(key.slice(this.#prefix.length));
    try {
      const parsed = JSON.parse(value) as Partial<ServiceAddress>;
      this.#instances.set(id, {
        id,
        tcp: String(parsed.tcp ?? ""),
        quantum: String(parsed.quantum ?? ""),
      });
    } catch {
      // go-zero registers the bare address as the value: accept it as the TCP address.
      this.#instances.set(id, { id, tcp: value, quantum: "" });
    }
  }

  #notify(): void {
    const instances = this.instances();
    for (const listener of [...this.#listeners]) listener(instances);
  }
}
