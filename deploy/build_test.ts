import assert from "node:assert/strict";
import { tempDir } from "../kernel/testing.ts";
import { build, HEALTHCHECK, TARGETS, UNSTABLE_FLAGS } from "./build.ts";
import { ALL_IN_ONE, SERVICES } from "./services.ts";

/** A stand-in `deno` that records its arguments (deno compile cannot reach its host here). */
async function recordingDeno(dir: string): Promise<{ path: string; calls: () => string[][] }> {
  const log = `${dir}/calls.jsonl`;
  const path = `${dir}/deno`;
  await Deno.writeTextFile(
    path,
    `#!/bin/sh\nprintf '%s\\0' "$@" >> "${log}"\nprintf '\\n' >> "${log}"\n`,
  );
  await Deno.chmod(path, 0o755);
  return {
    path,
    calls: () =>
      Deno.readTextFileSync(log).split("\n").filter(Boolean).map((line) =>
        line.split("\0").filter(Boolean)
      ),
  };
}

Deno.test("TARGETS: one per service, the all-in-one and the health check, with distinct names", () => {
  assert.deepEqual(
    TARGETS.map((t) => t.name),
    [...SERVICES.map((s) => s.name), "aetherflow", "healthcheck"],
  );
  assert.equal(new Set(TARGETS.map((t) => t.binary)).size, TARGETS.length);
  assert.equal(new Set(TARGETS.map((t) => t.bundle)).size, TARGETS.length);
  assert.equal(TARGETS.find((t) => t.name === "aetherflow")!.entry, ALL_IN_ONE.entry);
});

Deno.test("build() rejects an unknown target and a missing entrypoint unless skipMissing", async () => {
  await using dir = await tempDir();
  await assert.rejects(build("bundle", { outDir: dir.path, only: ["nope"] }), RangeError);
  const fake = await recordingDeno(dir.path);
  const targets = [
    { ...HEALTHCHECK, name: "ghost", entry: "deploy/no_such_entry.ts" },
    HEALTHCHECK,
  ];
  const options = { outDir: dir.path, deno: fake.path, targets };
  await assert.rejects(build("bundle", options), RangeError);
  const built = await build("bundle", { ...options, skipMissing: true });
  assert.deepEqual(built.map((a) => a.target.name), ["healthcheck"]);
  assert.equal(fake.calls().length, 1);
});

Deno.test("compile passes -A, the unstable flags, the package's asset files and --target to deno compile", async () => {
  await using dir = await tempDir();
  const fake = await recordingDeno(dir.path);
  const [artifact] = await build("compile", {
    outDir: `${dir.path}/dist`,
    only: ["healthcheck"],
    target: "aarch64-unknown-linux-gnu",
    deno: fake.path,
  });
  assert.equal(artifact!.path, `${dir.path}/dist/aetherflow-healthcheck`);
  const [args] = fake.calls();
  assert.equal(args![0], "compile");
  for (const flag of ["-A", ...UNSTABLE_FLAGS]) assert.ok(args!.includes(flag), flag);
  assert.equal(args![args!.indexOf("--target") + 1], "aarch64-unknown-linux-gnu");
  assert.equal(args![args!.indexOf("-o") + 1], artifact!.path);
  assert.match(args!.at(-1)!, /deploy\/healthcheck\.ts$/);

  // A service's JSON/HTML files are embedded (--include) so it can read them at run time.
  const withAssets = SERVICES.find((s) => {
    try {
      Deno.statSync(new URL(`../${s.entry}`, import.meta.url));
      return [...Deno.readDirSync(new URL(`../${s.name}`, import.meta.url))]
        .some((e) => e.name.endsWith(".json") || e.name.endsWith(".html"));
    } catch {
      return false;
    }
  });
  if (withAssets) {
    await build("compile", {
      outDir: `${dir.path}/dist`,
      only: [withAssets.name],
      deno: fake.path,
    });
    const args2 = fake.calls()[1]!;
    const included = args2.flatMap((a, i) => args2[i - 1] === "--include" ? [a] : []);
    assert.ok(included.length > 0 && included.every((f) => f.startsWith(`${withAssets.name}/`)));
  }
});
