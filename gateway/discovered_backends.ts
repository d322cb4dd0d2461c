/**
 * {@link Backends} over every session and statesync instance registered in etcd: the
 * instances come from {@link ServiceResolver} (get + watch), each call goes to the instance
 * {@link P2cBalancer} picks (P2C + EWMA), and an idempotent call that fails on an instance
 * (UNAVAILABLE, DEADLINE_EXCEEDED, ...) runs again on another one. Each instance gets its own
 * gRPC channel (through {@link createGrpcBackends}, so deadlines, metadata, breakers and
 * gRPC over Quantum work as with a single backend) and its own breakers, so one dead
 * instance never trips the breaker for the healthy ones. Instances that leave are closed.
 *
 * @example
 * ```ts
 * const backends = await createDiscoveredBackends({ etcd, transport: "tcp" });
 * await backends.statesync.getStats({});
 * await backends.close();
 * ```
 * @module
 */
import { AppError, type Logger, silentLogger } from "../kernel/mod.ts";
import type { EtcdConnection } from "../kernel/etcd.ts";
import {
  type BackendHealth,
  type Backends,
  IDEMPOTENT_METHODS,
  SESSION_UNARY_METHODS,
  type SessionBackend,
  STATESYNC_UNARY_METHODS,
  type StateSyncBackend,
  type StreamHandlers,
} from "./backends.ts";
import { BreakerRegistry } from "./breaker.ts";
import { type ServiceInstance, ServiceResolver } from "../kernel/discovery.ts";
import { createGrpcBackends, type GrpcBackendsOptions, type Tunnel } from "./grpc_backends.ts";
import { balancedCall, P2cBalancer, type P2cOptions } from "./p2c.ts";

/** Options for {@link createDiscoveredBackends}. */
export interface DiscoveredBackendsOptions {
  etcd: EtcdConnection;
  /** Discovery key prefix (default `<connection prefix>/services`). */
  prefix?: string;
  /** Registered service names (default "session" and "statesync"). */
  services?: { session: string; statesync: string };
  /** Reach instances by their TCP or Quantum address (default "tcp"). */
  transport?: "tcp" | "quantum";
  /** Opens a tunnel for transport "quantum". */
  tunnel?: (target: { hostname: string; port: number }) => Promise<Tunnel>;
  /** Extra attempts of idempotent calls on other instances (default 2). */
  retries?: number;
  /** Deadline for calls without a request budget, ms (default 5000). */
  defaultTimeoutMs?: number;
  /** Clock and random source of the balancers (tests). */
  balancer?: P2cOptions;
  /** Records every call attempt (shared by all instances' channels). */
  metrics?: GrpcBackendsOptions["metrics"];
  logger?: Logger;
}

/** One instance with its connection (created on first use). */
interface Member {
  instance: ServiceInstance;
  backends: Promise<Backends> | undefined;
}

/** The live instances of one service, balanced. */
class Pool {
  readonly name: string;
  readonly balancer: P2cBalancer<Member>;
  #members = new Map<string, Member>();
  #open: (instance: ServiceInstance) => Promise<Backends>;
  #logger: Logger;

  constructor(
    name: string,
    open: (instance: ServiceInstance) => Promise<Backends>,
    balancer: P2cOptions,
    logger: Logger,
  ) {
    this.name = name;
    this.#open = open;
    this.balancer = new P2cBalancer<Member>(balancer);
    this.#logger = logger;
  }

  update(instances: ServiceInstance[]): void {
    const next = new Map<string, Member>();
    for (const instance of instances) {
      const existing = this.#members.get(instance.id);
      if (existing !== undefined && existing.instance.tcp === instance.tcp) {
        next.set(instance.id, existing);
      } else next.set(instance.id, { instance, backends: undefined });
    }
    for (const [id, member] of this.#members) {
      if (next.get(id) !== member) this.#release(member);
    }
    this.#members = next;
    this.balancer.update(
      [...next.values()].map((member) => ({ id: member.instance.id, value: member })),
    );
    this.#logger.info("Instances changed", { service: this.name, instances: next.size });
  }

  backendsOf(member: Member): Promise<Backends> {
    member.backends ??= this.#open(member.instance);
    return member.backends;
  }

  members(): Member[] {
    return [...this.#members.values()];
  }

  async close(): Promise<void> {
    for (const member of this.#members.values()) this.#release(member);
    this.#members.clear();
    this.balancer.update([]);
    await Promise.allSettled([...this.#closing]);
  }

  #closing = new Set<Promise<void>>();

  #release(member: Member): void {
    const backends = member.backends;
    member.backends = undefined;
    if (backends === undefined) return;
    const closing = backends.then((b) => b.close()).catch((error) =>
      this.#logger.warn("Closing an instance's channel failed", { error: String(error) })
    ).finally(() => this.#closing.delete(closing));
    this.#closing.add(closing);
  }
}

/**
 * Resolve both services in etcd and balance calls over their instances.
 * @throws {Error} from etcd when the first read fails
 */
export async function createDiscoveredBackends(
  options: DiscoveredBackendsOptions,
): Promise<Backends> {
  const logger = options.logger ?? silentLogger;
  const names = options.services ?? { session: "session", statesync: "statesync" };
  const transport = options.transport ?? "tcp";
  const resolverOptions = options.prefix === undefined ? {} : { prefix: options.prefix };
  const open = (instance: ServiceInstance) => {
    const address = transport === "quantum" && instance.quantum !== ""
      ? instance.quantum
      : instance.tcp;
    const target = {
      address,
      transport: address === instance.tcp ? "tcp" as const : "quantum" as const,
      required: false,
      retries: 0, // failover to other instances happens here, not on the same one
      defaultTimeoutMs: options.defaultTimeoutMs ?? 5000,
    };
    return createGrpcBackends({
      session: target,
      statesync: target,
      breakers: new BreakerRegistry(),
      logger,
      ...(options.tunnel === undefined ? {} : { tunnel: options.tunnel }),
      ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
    });
  };
  const balancerOptions = options.balancer ?? {};
  const sessions = new Pool(names.session, open, balancerOptions, logger);
  const statesyncs = new Pool(names.statesync, open, balancerOptions, logger);
  const resolvers: ServiceResolver[] = [];
  try {
    for (
      const [pool, name] of [[sessions, names.session], [statesyncs, names.statesync]] as const
    ) {
      const resolver = await ServiceResolver.open(options.etcd, name, resolverOptions);
      resolvers.push(resolver);
      pool.update(resolver.instances());
      resolver.onChange((instances) => pool.update(instances));
    }
  } catch (error) {
    for (const resolver of resolvers) await resolver.close();
    throw error;
  }

  const call = <R>(pool: Pool, method: string, use: (b: Backends) => Promise<R>) =>
    balancedCall(pool.balancer, async (member) => use(await pool.backendsOf(member)), {
      idempotent: IDEMPOTENT_METHODS.has(method),
      retries: options.retries ?? 2,
    }).catch((error) => {
      if (pool.balancer.size === 0) {
        throw new AppError("UNAVAILABLE", `No ${pool.name} instance is registered`, {
          cause: error,
        });
      }
      throw error;
    });

  const session = Object.fromEntries(SESSION_UNARY_METHODS.map((method) => [
    method,
    (req: unknown, opts?: unknown) =>
      call(
        sessions,
        method,
        (b) => (b.session[method] as (r: unknown, o?: unknown) => Promise<unknown>)(req, opts),
      ),
  ])) as unknown as SessionBackend;

  const unary = Object.fromEntries(STATESYNC_UNARY_METHODS.map((method) => [
    method,
    (req: unknown, opts?: unknown) =>
      call(
        statesyncs,
        method,
        (b) => (b.statesync[method] as (r: unknown, o?: unknown) => Promise<unknown>)(req, opts),
      ),
  ])) as unknown as Omit<StateSyncBackend, "subscribeDocument" | "submitOperations">;

  /** Open a stream on a picked instance; the pick ends with the stream. */
  function stream<H extends { cancel(): void }, T>(
    handlers: StreamHandlers<T>,
    start: (backends: Backends, handlers: StreamHandlers<T>) => H,
  ): { handle: Promise<H>; cancelled: () => boolean; cancel: () => void } {
    const picked = statesyncs.balancer.pick();
    let cancelled = false;
    if (picked === undefined) {
      queueMicrotask(() =>
        handlers.onError(
          new AppError("UNAVAILABLE", `No ${names.statesync} instance is registered`),
        )
      );
      const none = Promise.resolve({ cancel() {} } as H);
      return { handle: none, cancelled: () => cancelled, cancel: () => void (cancelled = true) };
    }
    const wrapped: StreamHandlers<T> = {
      onData: (message) => handlers.onData(message),
      onError: (error) => {
        picked.done(error);
        handlers.onError(error);
      },
      onEnd: () => {
        picked.done();
        handlers.onEnd();
      },
    };
    const handle = statesyncs.backendsOf(picked.value).then((b) => start(b, wrapped));
    handle.catch((error) => wrapped.onError(error));
    return {
      handle,
      cancelled: () => cancelled,
      cancel() {
        cancelled = true;
        picked.done();
        handle.then((h) => h.cancel(), () => {});
      },
    };
  }

  const statesync: StateSyncBackend = {
    ...unary,
    subscribeDocument(req, handlers) {
      const s = stream(handlers, (b, h) => b.statesync.subscribeDocument(req, h));
      return { cancel: s.cancel };
    },
    submitOperations(handlers) {
      const queued: Parameters<ReturnType<StateSyncBackend["submitOperations"]>["send"]>[0][] = [];
      let ready: ReturnType<StateSyncBackend["submitOperations"]> | undefined;
      const s = stream(handlers, (b, h) => {
        const opened = b.statesync.submitOperations(h);
        ready = opened;
        for (const req of queued.splice(0)) opened.send(req);
        return opened;
      });
      return {
        send(req) {
          if (ready !== undefined) ready.send(req);
          else queued.push(req);
        },
        cancel: s.cancel,
      };
    },
  };

  return {
    session,
    statesync,
    async health(timeoutMs = 1000) {
      const result: Record<string, BackendHealth> = {};
      for (const pool of [sessions, statesyncs]) {
        const started = performance.now();
        const members = pool.members();
        const checks = await Promise.all(members.map(async (member) => {
          const backends = await pool.backendsOf(member);
          const key = pool === sessions ? "session" : "statesync";
          return (await backends.health(timeoutMs))[key]!;
        }));
        const serving = checks.filter((c) => c.status === "SERVING").length;
        result[pool === sessions ? "session" : "statesync"] = {
          status: serving > 0 ? "SERVING" : members.length > 0 ? "NOT_SERVING" : "UNREACHABLE",
          required: true,
          transport,
          address: members.map((m) => m.instance.tcp).join(",") || "(no instance registered)",
          latencyMs: Math.round((performance.now() - started) * 100) / 100,
          ...(serving === members.length
            ? {}
            : { error: `${serving} of ${members.length} instances serving` }),
        };
      }
      return result;
    },
    async close() {
      for (const resolver of resolvers) await resolver.close();
      await sessions.close();
      await statesyncs.close();
    },
  };
}
