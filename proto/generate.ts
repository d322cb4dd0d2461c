/**
 * Regenerates the typed gRPC code in proto/gen from the .proto contracts with a pinned
 * ts-proto plugin and Debian's protoc (`apt-get install protobuf-compiler`).
 *
 *   deno task proto          # write proto/gen
 *   deno task proto --check  # exit 1 if proto/gen is stale
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { homedir } from "node:os";

export const TS_PROTO_VERSION = "2.18.0";
export const PROTO_FILES = ["session.proto", "statesync.proto", "health.proto"];
const OPTIONS = [
  "outputServices=grpc-js",
  "esModuleInterop=true",
  "importSuffix=.js",
  "forceLong=number",
  "env=node",
  "useDate=false",
  "oneof=unions-value",
].join(",");

const protoDir = fileURLToPath(new URL(".", import.meta.url));

/** Install the pinned plugin into a cache directory once; returns its executable path. */
async function pluginPath(): Promise<string> {
  const prefix = join(homedir(), ".cache", "aetherflow", `ts-proto-${TS_PROTO_VERSION}`);
  const bin = join(prefix, "node_modules", ".bin", "protoc-gen-ts_proto");
  try {
    await Deno.stat(bin);
    return bin;
  } catch { /* install below */ }
  await run("npm", [
    "install",
    "--no-save",
    "--silent",
    "--prefix",
    prefix,
    `ts-proto@${TS_PROTO_VERSION}`,
  ]);
  return bin;
}

async function run(command: string, args: string[]): Promise<void> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(
        `${command} not found${command === "protoc" ? ": apt-get install protobuf-compiler" : ""}`,
      );
    }
    throw error;
  }
  if (!output.success) {
    throw new Error(`${command} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
}

/** Generate into `outDir`. */
export async function generate(outDir: string): Promise<void> {
  const plugin = await pluginPath();
  await run("protoc", [
    `--plugin=protoc-gen-ts_proto=${plugin}`,
    `--ts_proto_out=${outDir}`,
    `--ts_proto_opt=${OPTIONS}`,
    `-I`,
    protoDir,
    ...PROTO_FILES.map((file) => join(protoDir, file)),
  ]);
}

/** Names of generated files whose content differs from a fresh generation. */
export async function staleFiles(): Promise<string[]> {
  const fresh = await Deno.makeTempDir({ prefix: "aetherflow-proto-" });
  try {
    await generate(fresh);
    const stale: string[] = [];
    for await (const entry of Deno.readDir(fresh)) {
      const committed = await Deno.readTextFile(join(protoDir, "gen", entry.name)).catch(() => "");
      if (committed !== await Deno.readTextFile(join(fresh, entry.name))) stale.push(entry.name);
    }
    return stale;
  } finally {
    await Deno.remove(fresh, { recursive: true });
  }
}

if (import.meta.main) {
  if (Deno.args.includes("--check")) {
    const stale = await staleFiles();
    if (stale.length > 0) {
      console.error(`proto/gen is stale (${stale.join(", ")}): run deno task proto`);
      Deno.exit(1);
    }
    console.log("proto/gen is up to date");
  } else {
    await generate(join(protoDir, "gen"));
    console.log("proto/gen regenerated");
  }
}
