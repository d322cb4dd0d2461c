import assert from "node:assert/strict";
import { tempDir } from "../kernel/testing.ts";
import { hashPassword, UserStore, verifyPassword } from "./users.ts";

Deno.test("users: PBKDF2 hashes are salted and verify only the right password", async () => {
  const a = await hashPassword("secret-pw", { iterations: 1_000 });
  const b = await hashPassword("secret-pw", { iterations: 1_000 });
  assert.notEqual(a.salt, b.salt);
  assert.notEqual(a.hash, b.hash);
  assert.equal(a.algorithm, "PBKDF2-SHA256");
  assert.ok(await verifyPassword("secret-pw", a));
  assert.ok(!(await verifyPassword("secret-pX", a)));
  assert.ok(!JSON.stringify(a).includes("secret-pw"));
});

Deno.test("users: a saved users file loads back as JSON and YAML, without plaintext", async () => {
  await using dir = await tempDir();
  const store = new UserStore([]);
  const alice = await store.upsert("alice", "pw-alice-123", { iterations: 1_000 });
  await store.upsert("root", "pw-root-123", { role: "admin", iterations: 1_000 });
  const path = `${dir.path}/users.json`;
  await store.save(path);
  assert.ok(!(await Deno.readTextFile(path)).includes("pw-alice"));
  const loaded = await UserStore.load(path);
  assert.equal((await loaded.authenticate("alice", "pw-alice-123"))?.id, alice.id);
  assert.equal(await loaded.authenticate("alice", "wrong"), undefined);
  assert.equal(await loaded.authenticate("nobody", "pw-alice-123"), undefined);
  assert.equal(loaded.byId(alice.id)?.username, "alice");

  const record = loaded.list().find((u) => u.username === "root")!;
  const yamlPath = `${dir.path}/users.yaml`;
  await Deno.writeTextFile(
    yamlPath,
    `users:\n  - id: ${record.id}\n    username: root\n    role: admin\n    password:\n` +
      `      algorithm: PBKDF2-SHA256\n      iterations: ${record.password.iterations}\n` +
      `      salt: ${record.password.salt}\n      hash: ${record.password.hash}\n`,
  );
  const fromYaml = await UserStore.load(yamlPath);
  assert.equal((await fromYaml.authenticate("root", "pw-root-123"))?.role, "admin");
});

Deno.test("users: an invalid users file names the bad key; a missing one is empty", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/users.json`;
  await Deno.writeTextFile(path, JSON.stringify({ users: [{ id: "1", username: "x" }] }));
  await assert.rejects(UserStore.load(path), /users\.0\.password/);
  assert.equal((await UserStore.load(`${dir.path}/none.json`)).list().length, 0);
});
