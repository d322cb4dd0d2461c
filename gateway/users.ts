/**
 * The dev login's users file (JSON or YAML): user id, name, role and a salted PBKDF2-SHA256
 * password hash made with WebCrypto. No plaintext password is stored anywhere.
 *
 * File shape: `{ "users": [{ "id", "username", "role", "password": { "algorithm":
 * "PBKDF2-SHA256", "iterations", "salt", "hash" } }] }` (salt and hash base64url).
 * @module
 */
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { newId } from "../kernel/mod.ts";

/** Default PBKDF2-SHA256 iterations (OWASP 2023 recommendation). */
export const DEFAULT_ITERATIONS = 600_000;

const PasswordHashSchema = z.object({
  algorithm: z.literal("PBKDF2-SHA256"),
  iterations: z.number().int().min(1_000),
  salt: z.string().min(16),
  hash: z.string().min(32),
}).strict();

const UserSchema = z.object({
  id: z.string().min(1),
  username: z.string().min(1).max(64),
  role: z.enum(["admin", "user"]).default("user"),
  password: PasswordHashSchema,
}).strict();

const UsersFileSchema = z.object({ users: z.array(UserSchema) }).strict();

/** A stored password hash. */
export type PasswordHash = z.output<typeof PasswordHashSchema>;
/** A user record from the users file. */
export type UserRecord = z.output<typeof UserSchema>;

/** Hash a password with a fresh 16-byte salt. */
export async function hashPassword(
  password: string,
  options: { iterations?: number } = {},
): Promise<PasswordHash> {
  const iterations = options.iterations ?? DEFAULT_ITERATIONS;
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const hash = await derive(password, salt, iterations);
  return { algorithm: "PBKDF2-SHA256", iterations, salt: b64url(salt), hash: b64url(hash) };
}

/** True when `password` matches `stored` (constant-time comparison). */
export async function verifyPassword(password: string, stored: PasswordHash): Promise<boolean> {
  const expected = fromB64url(stored.hash);
  const actual = await derive(
    password,
    fromB64url(stored.salt),
    stored.iterations,
    expected.length,
  );
  let diff = expected.length ^ actual.length;
  for (let i = 0; i < expected.length; i++) diff |= expected[i]! ^ (actual[i] ?? 0);
  return diff === 0;
}

/** The users known to the gateway. */
export class UserStore {
  #byName = new Map<string, UserRecord>();
  #byId = new Map<string, UserRecord>();
  #dummy: PasswordHash | undefined;

  constructor(users: readonly UserRecord[]) {
    for (const user of users) {
      this.#byName.set(user.username, user);
      this.#byId.set(user.id, user);
    }
  }

  /** Read a users file (JSON or YAML); a missing file gives an empty store. */
  static async load(path: string): Promise<UserStore> {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return new UserStore([]);
      throw error;
    }
    const raw = path.endsWith(".json") ? JSON.parse(text) : parseYaml(text);
    const parsed = UsersFileSchema.safeParse(raw ?? { users: [] });
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new TypeError(`Invalid users file ${path}: ${issue.path.join(".")}: ${issue.message}`);
    }
    return new UserStore(parsed.data.users);
  }

  /** Every user (for writing the file back). */
  list(): UserRecord[] {
    return [...this.#byId.values()];
  }

  /** A user by id. */
  byId(id: string): UserRecord | undefined {
    return this.#byId.get(id);
  }

  /**
   * The user when `username` and `password` match, else undefined. Unknown names still pay
   * for one hash so response time does not reveal which names exist.
   */
  async authenticate(username: string, password: string): Promise<UserRecord | undefined> {
    const user = this.#byName.get(username);
    if (user === undefined) {
      this.#dummy ??= await hashPassword("dummy", { iterations: this.#typicalIterations() });
      await verifyPassword(password, this.#dummy);
      return undefined;
    }
    return (await verifyPassword(password, user.password)) ? user : undefined;
  }

  /** Add or replace a user (by username). */
  async upsert(
    username: string,
    password: string,
    options: { role?: "admin" | "user"; iterations?: number } = {},
  ): Promise<UserRecord> {
    const existing = this.#byName.get(username);
    const user: UserRecord = {
      id: existing?.id ?? newId(),
      username,
      role: options.role ?? existing?.role ?? "user",
      password: await hashPassword(password, { iterations: options.iterations }),
    };
    this.#byName.set(username, user);
    this.#byId.set(user.id, user);
    return user;
  }

  /** Write the users as a JSON file (mode 0600). */
  async save(path: string): Promise<void> {
    const text = JSON.stringify({ users: this.list() }, null, 2) + "\n";
    await Deno.writeTextFile(path, text, { mode: 0o600 });
  }

  #typicalIterations(): number {
    const first = this.#byId.values().next().value;
    return first?.password.iterations ?? DEFAULT_ITERATIONS;
  }
}

async function derive(
  password: string,
  salt: Uint8Array,
  iterations: number,
  length = 32,
): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(password),
    "PBKDF2",
    false,
    ["deriveBits"],
  );
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt: salt as Uint8Array<ArrayBuffer>, iterations },
    key,
    length * 8,
  );
  return new Uint8Array(bits);
}

function b64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
    .replace(/=+$/, "");
}

function fromB64url(text: string): Uint8Array {
  const padded = text.replaceAll("-", "+").replaceAll("_", "/") +
    "===".slice((text.length + 3) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}
