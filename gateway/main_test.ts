import assert from "node:assert/strict";
import { tempDir } from "../kernel/testing.ts";
import { UserStore } from "./users.ts";

const here = (file: string) => new URL(file, import.meta.url).pathname;

async function run(file: string, args: string[], env: Record<string, string>) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", here(file), ...args],
    env,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test("main refuses to start in production mode with the default secret", async () => {
  const result = await run("./main.ts", [], {
    AETHERFLOW_GATEWAY_MODE: "production",
    AETHERFLOW_GATEWAY_PORT: "0",
  });
  assert.equal(result.code, 2);
  assert.match(result.stderr, /default JWT secret/);
});

Deno.test("main rejects an invalid config naming the key", async () => {
  const result = await run("./main.ts", [], { AETHERFLOW_GATEWAY_PORT: "seventy" });
  assert.equal(result.code, 2);
  assert.match(result.stderr, /port/);
});

Deno.test("user:add stores a salted hash the gateway can log in with, never the password", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/users.json`;
  const result = await run("./user_add.ts", ["carol", "--role", "admin", "--file", file], {
    AETHERFLOW_PASSWORD: "carol-secret-pw",
  });
  assert.equal(result.code, 0, result.stderr);
  const text = await Deno.readTextFile(file);
  assert.ok(!text.includes("carol-secret-pw"));
  const users = await UserStore.load(file);
  assert.equal((await users.authenticate("carol", "carol-secret-pw"))?.role, "admin");
  const short = await run("./user_add.ts", ["dave", "--file", file], { AETHERFLOW_PASSWORD: "x" });
  assert.equal(short.code, 2);
  assert.match(short.stderr, /at least 8/);
});
