/**
 * Build the deployable artifacts into `dist/`:
 *
 * - `deno task bundle` — one self-contained JavaScript file per service (and the all-in-one
 *   and the health-check tool) with `deno bundle --platform deno`; npm packages and the
 *   Reed-Solomon wasm are inlined, so `deno run` needs no cache and no network. Files a
 *   package reads at run time next to its modules (e.g. `gateway/openapi.json`) are copied
 *   beside the bundles.
 * - `deno task compile` — one native binary per service (and the all-in-one and the
 *   health-check tool) with `deno compile`. It downloads Deno's runtime (`denort`) from
 *   Deno's release host, so it works on machines that can reach it (not on our CI).
 *
 * Usage: `deno run -A deploy/build.ts bundle|compile [--out DIR] [--target TRIPLE]
 * [--skip-missing] [NAME...]` where NAME is a service, `aetherflow` or `healthcheck`.
 *
 * @example
 * ```ts
 * const built = await build("bundle", { outDir: "dist", only: ["session"] });
 * console.log(built.map((artifact) => artifact.path));
 * ```
 * @module
 */
import { fileURLToPath } from "node:url";
import { ALL_IN_ONE, SERVICES } from "./services.ts";

/** What to build: bundles (run with `deno run`) or native binaries. */
export type BuildMode = "bundle" | "compile";

/** One thing to build. */
export interface BuildTarget {
  /** Name used on the command line: a service name, `aetherflow` or `healthcheck`. */
  readonly name: string;
  /** Entrypoint relative to the repository root. */
  readonly entry: string;
  /** Native binary file name. */
  readonly binary: string;
  /** Bundle file name. */
  readonly bundle: string;
  /** Package folders whose run-time asset files the target needs. */
  readonly packages: readonly string[];
}

/** The health-check tool shipped in the container image (see deploy/healthcheck.ts). */
export const HEALTHCHECK: BuildTarget = {
  name: "healthcheck",
  entry: "deploy/healthcheck.ts",
  binary: "aetherflow-healthcheck",
  bundle: "aetherflow-healthcheck.js",
  packages: [],
};

/** Every build target, in build order. */
export const TARGETS: readonly BuildTarget[] = [
  ...SERVICES.map((service) => ({ ...service, packages: [service.name] })),
  { name: "aetherflow", ...ALL_IN_ONE, packages: SERVICES.map((service) => service.name) },
  HEALTHCHECK,
];

/**
 * Deno's unstable features the services use (also declared in deno.json, which `deno run`
 * of a bundle outside the repository does not see).
 */
export const UNSTABLE_FLAGS: readonly string[] = [
  "--unstable-net",
  "--unstable-kv",
  "--unstable-raw-imports",
];

/** Options for {@link build}. */
export interface BuildOptions {
  /** Output directory (default `dist`), relative to the repository root or absolute. */
  outDir?: string;
  /** Only these target names (default: all). */
  only?: readonly string[];
  /** Skip targets whose entrypoint does not exist instead of failing. */
  skipMissing?: boolean;
  /** `deno compile --target` triple, e.g. `x86_64-unknown-linux-gnu`. */
  target?: string;
  /** The deno executable (default: the one running this script). */
  deno?: string;
  /** Targets to choose from (default {@link TARGETS}). */
  targets?: readonly BuildTarget[];
}

/** A built artifact. */
export interface Artifact {
  /** The target built. */
  readonly target: BuildTarget;
  /** Absolute path of the bundle or binary. */
  readonly path: string;
}

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** Run-time files a package may read next to its modules. */
const ASSET = /\.(json|html|css|js|svg|png|ico|txt|wasm)$/;

/**
 * Build bundles or binaries for the selected targets.
 * @throws {RangeError} for an unknown target name, or a missing entrypoint without `skipMissing`
 * @throws {Error} when deno bundle/compile fails (its output is in the message)
 */
export async function build(mode: BuildMode, options: BuildOptions = {}): Promise<Artifact[]> {
  const outDir = resolve(options.outDir ?? "dist");
  const deno = options.deno ?? Deno.execPath();
  const selected = select(options.targets ?? TARGETS, options.only);
  const present: BuildTarget[] = [];
  for (const target of selected) {
    if (await exists(resolve(target.entry))) present.push(target);
    else if (!options.skipMissing) {
      throw new RangeError(`Cannot build ${target.name}: ${target.entry} does not exist`);
    }
  }
  await Deno.mkdir(outDir, { recursive: true });
  const artifacts: Artifact[] = [];
  for (const target of present) {
    const assets = await packageAssets(target.packages);
    const path = `${outDir}/${mode === "bundle" ? target.bundle : target.binary}`;
    const args = mode === "bundle"
      ? ["bundle", "--quiet", "--platform", "deno", "--unstable-raw-imports", "-o", path]
      : [
        "compile",
        "--quiet",
        "-A",
        ...UNSTABLE_FLAGS,
        ...assets.flatMap((asset) => ["--include", asset]),
        ...(options.target ? ["--target", options.target] : []),
        "-o",
        path,
      ];
    const output = await new Deno.Command(deno, {
      args: [...args, resolve(target.entry)],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!output.success) {
      const text = new TextDecoder().decode(output.stderr) +
        new TextDecoder().decode(output.stdout);
      throw new Error(`deno ${mode} ${target.entry} failed:\n${text}`);
    }
    if (mode === "bundle") await copyAssets(assets, outDir);
    artifacts.push({ target, path });
  }
  return artifacts;
}

function select(
  targets: readonly BuildTarget[],
  only: readonly string[] | undefined,
): BuildTarget[] {
  if (!only || only.length === 0) return [...targets];
  return only.map((name) => {
    const target = targets.find((t) => t.name === name);
    if (!target) {
      throw new RangeError(
        `Unknown build target ${name}: expected one of ${targets.map((t) => t.name).join(", ")}`,
      );
    }
    return target;
  });
}

/** Asset files (not code, not tests) directly in the given package folders. */
async function packageAssets(packages: readonly string[]): Promise<string[]> {
  const assets: string[] = [];
  for (const dir of packages) {
    if (!await exists(resolve(dir))) continue;
    for await (const entry of Deno.readDir(resolve(dir))) {
      if (entry.isFile && ASSET.test(entry.name)) assets.push(`${dir}/${entry.name}`);
    }
  }
  return assets.sort();
}

/** Copy assets beside the bundles; two packages shipping the same file name is an error. */
async function copyAssets(assets: readonly string[], outDir: string): Promise<void> {
  const seen = new Map<string, string>();
  for (const asset of assets) {
    const name = asset.slice(asset.lastIndexOf("/") + 1);
    const other = seen.get(name);
    if (other !== undefined && other !== asset) {
      throw new Error(`Cannot place ${asset} beside the bundles: ${other} has the same name`);
    }
    seen.set(name, asset);
    await Deno.copyFile(resolve(asset), `${outDir}/${name}`);
  }
}

function resolve(path: string): string {
  return path.startsWith("/") ? path : `${ROOT}${path}`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

if (import.meta.main) {
  const [mode, ...rest] = Deno.args;
  if (mode !== "bundle" && mode !== "compile") {
    console.error(
      "Usage: deno run -A deploy/build.ts bundle|compile [--out DIR] [--target TRIPLE] " +
        "[--skip-missing] [NAME...]",
    );
    Deno.exit(2);
  }
  const options: BuildOptions = { only: [] };
  const only: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (arg === "--out") options.outDir = rest[++i];
    else if (arg === "--target") options.target = rest[++i];
    else if (arg === "--skip-missing") options.skipMissing = true;
    else only.push(arg);
  }
  options.only = only;
  try {
    for (const artifact of await build(mode, options)) {
      const { size } = await Deno.stat(artifact.path);
      console.log(`${artifact.path} (${(size / 1e6).toFixed(1)} MB)`);
    }
  } catch (error) {
    console.error((error as Error).message);
    Deno.exit(1);
  }
}
