/**
 * Connecting to etcd (v3, through `npm:etcd3`) the same way in every service: one config
 * shape (endpoints, key prefix, TLS, user/password), a reachability check at start-up that
 * fails with a clear message, and small helpers for keys, ranges, transactions and leases.
 *
 * Imported directly (`kernel/etcd.ts`), not through `kernel/mod.ts`, so that services
 * running on Deno KV do not load the etcd client.
 *
 * @example
 * ```ts
 * const etcd = await connectEtcd({ endpoints: ["http://127.0.0.1:2379"] });
 * try {
 *   await etcd.client.put(etcd.key("hello")).value("world");
 * } finally {
 *   etcd.close();
 * }
 * ```
 * @module
 */
import { Buffer } from "node:buffer";
import {
  Etcd3,
  EtcdLeaseInvalidError,
  type ICompare,
  type IKeyValue,
  type IOptions,
  type IRequestOp,
  type ITxnResponse,
} from "etcd3";
import { AppError } from "./errors.ts";
import { type EtcdConfig, etcdConfigSchema } from "./etcd_config.ts";

export { type EtcdConfig, etcdConfigSchema };

/** An open etcd client with the deployment's key prefix. */
export interface EtcdConnection {
  /** The `etcd3` client (shared; do not close it directly). */
  readonly client: Etcd3;
  /** The key prefix, without a trailing slash. */
  readonly prefix: string;
  /** `prefix/part1/part2...` */
  key(...parts: string[]): string;
  /** Close the client. Idempotent. */
  close(): void;
}

/**
 * Open a client and check that etcd answers within `dialTimeoutMs`.
 * @throws {AppError} UNAVAILABLE naming the endpoints when etcd cannot be reached
 * @throws {Deno.errors.NotFound} when a TLS file is missing
 */
export async function connectEtcd(config: Partial<EtcdConfig>): Promise<EtcdConnection> {
  const settings = etcdConfigSchema.parse(config);
  const options: IOptions = {
    hosts: settings.endpoints,
    dialTimeout: settings.dialTimeoutMs,
  };
  const { caFile, certFile, keyFile } = settings.tls;
  if (caFile !== undefined) {
    options.credentials = {
      rootCertificate: Buffer.from(await Deno.readFile(caFile)),
      ...(certFile === undefined || keyFile === undefined ? {} : {
        certChain: Buffer.from(await Deno.readFile(certFile)),
        privateKey: Buffer.from(await Deno.readFile(keyFile)),
      }),
    };
  }
  if (settings.auth.username !== undefined) {
    options.auth = { username: settings.auth.username, password: settings.auth.password ?? "" };
  }
  const client = new Etcd3(options);
  try {
    const deadline = new Date(Date.now() + settings.dialTimeoutMs);
    await client.kv.range({ key: Buffer.from(settings.prefix), limit: 1 }, { deadline });
  } catch (error) {
    client.close();
    throw new AppError(
      "UNAVAILABLE",
      `etcd at ${settings.endpoints.join(", ")} is unreachable or refused the start-up check ` +
        `(waited ${settings.dialTimeoutMs} ms): ${error instanceof Error ? error.message : error}`,
      { cause: error },
    );
  }
  const prefix = settings.prefix.replace(/\/+$/, "");
  let closed = false;
  return {
    client,
    prefix,
    key: (...parts: string[]) => [prefix, ...parts].join("/"),
    close() {
      if (closed) return;
      closed = true;
      client.close();
    },
  };
}

/** The end of the key range holding every key that starts with `prefix`. */
export function prefixEnd(prefix: string | Uint8Array): Buffer {
  const bytes = Buffer.from(typeof prefix === "string" ? Buffer.from(prefix) : prefix);
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      bytes[i] = bytes[i]! + 1;
      return bytes.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** A non-negative integer as a fixed-width decimal string, so keys sort numerically. */
export function padNumber(value: number, width = 16): string {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`Invalid key number: ${value}`);
  }
  return String(value).padStart(width, "0");
}

/** A request inside an etcd transaction (the `etcd3` RPC shape). */
export type EtcdOp = IRequestOp;
/** A comparison guarding an etcd transaction. */
export type EtcdCompare = ICompare;

/** Builders for transaction requests, with string keys and values (UTF-8). */
export const etcdOp = {
  /** Put `value` at `key`, attached to `lease` when given (a lease id from `leaseGrant`). */
  put(key: string, value: string, lease?: string): EtcdOp {
    return {
      request_put: {
        key: Buffer.from(key),
        value: Buffer.from(value),
        ...(lease === undefined ? {} : { lease }),
      },
    };
  },
  /** Delete one key. */
  delete(key: string): EtcdOp {
    return { request_delete_range: { key: Buffer.from(key) } };
  },
  /** Read one key. */
  get(key: string): EtcdOp {
    return { request_range: { key: Buffer.from(key) } };
  },
  /** Read the keys with this prefix in key order. */
  prefix(prefix: string, limit = 0): EtcdOp {
    return { request_range: { key: Buffer.from(prefix), range_end: prefixEnd(prefix), limit } };
  },
};

/** Builders for transaction comparisons (all equality). */
export const etcdCompare = {
  /** The key's last modification revision is `revision` (0 = the key does not exist). */
  modRevision(key: string, revision: string | number): EtcdCompare {
    return { key: Buffer.from(key), target: "Mod", result: "Equal", mod_revision: revision };
  },
  /** The key's creation revision is `revision` (0 = the key does not exist). */
  createRevision(key: string, revision: string | number): EtcdCompare {
    return { key: Buffer.from(key), target: "Create", result: "Equal", create_revision: revision };
  },
  /** The key holds exactly `value` (false when the key is absent). */
  value(key: string, value: string): EtcdCompare {
    return { key: Buffer.from(key), target: "Value", result: "Equal", value: Buffer.from(value) };
  },
};

/**
 * Run one transaction: when every comparison holds, `success` runs, else `failure`.
 * @example
 * ```ts
 * const result = await etcdTxn(etcd.client, [etcdCompare.modRevision(key, 0)], [etcdOp.put(key, "v")]);
 * if (!result.succeeded) throw new AppError("ALREADY_EXISTS", "taken");
 * ```
 */
export function etcdTxn(
  client: Etcd3,
  compare: EtcdCompare[],
  success: EtcdOp[],
  failure: EtcdOp[] = [],
): Promise<ITxnResponse> {
  return client.kv.txn({ compare, success, failure });
}

/** The key-values of each range response in a transaction result, in request order. */
export function rangeResults(response: ITxnResponse): IKeyValue[][] {
  return response.responses.map((r) => r.response_range?.kvs ?? []);
}

/** Grant a lease of `ttlSeconds` (etcd raises very small TTLs to its minimum); its id. */
export async function grantLease(client: Etcd3, ttlSeconds: number): Promise<string> {
  const response = await client.leaseClient.leaseGrant({ TTL: Math.max(1, Math.ceil(ttlSeconds)) });
  return String(response.ID);
}

/** Revoke a lease (deleting its keys); an already gone lease is not an error. */
export async function revokeLease(client: Etcd3, id: string): Promise<void> {
  try {
    await client.leaseClient.leaseRevoke({ ID: id });
  } catch (error) {
    if (!(error instanceof EtcdLeaseInvalidError) && !/lease not found/i.test(String(error))) {
      throw error;
    }
  }
}
