/**
 * Add or update a user in the gateway's users file (PBKDF2-SHA256, no plaintext stored):
 * `deno task user:add <username> [--role admin|user] [--file data/users.json]`; the password
 * is read from the terminal (or from `AETHERFLOW_PASSWORD` for scripts).
 * @module
 */
import { parseArgs } from "node:util";
import { UserStore } from "./users.ts";

/**
 * Add (or update) a user in `file` and return its id.
 * @throws {RangeError} when the password is shorter than 8 characters
 * @example
 * ```ts
 * await addUser("data/users.json", { username: "alice", password: "s3cret-pw" }, { role: "admin" });
 * ```
 */
export async function addUser(
  file: string,
  credentials: { username: string; password: string },
  options: { role?: "admin" | "user"; iterations?: number } = {},
): Promise<string> {
  const { username, password } = credentials;
  if (password.length < 8) throw new RangeError("Password must have at least 8 characters");
  const store = await UserStore.load(file);
  const user = await store.upsert(username, password, options);
  const dir = file.includes("/") ? file.slice(0, file.lastIndexOf("/")) : ".";
  await Deno.mkdir(dir, { recursive: true });
  await store.save(file);
  return user.id;
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: {
      role: { type: "string", default: "user" },
      file: { type: "string", default: "data/users.json" },
    },
    allowPositionals: true,
  });
  const username = positionals[0];
  const role = values.role;
  if (!username || (role !== "admin" && role !== "user")) {
    console.error("Usage: deno task user:add <username> [--role admin|user] [--file path]");
    Deno.exit(2);
  }
  const password = Deno.env.get("AETHERFLOW_PASSWORD") ?? prompt("Password:") ?? "";
  try {
    const id = await addUser(values.file!, { username, password }, { role });
    console.log(`User ${username} (${role}) saved to ${values.file} with id ${id}`);
  } catch (error) {
    console.error((error as Error).message);
    Deno.exit(2);
  }
}
