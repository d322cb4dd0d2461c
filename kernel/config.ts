/**
 * Configuration loading: an optional YAML/JSON file per service, then environment
 * overrides, validated by the service's zod schema (with defaults, so no file is
 * needed). Errors name the bad key and where its value came from.
 *
 * Environment overrides: `AETHERFLOW_<SERVICE>_<KEY>`, with camelCase keys written in
 * SNAKE_CASE and nested keys joined by `__`, e.g. `AETHERFLOW_GATEWAY_PORT=9090` or
 * `AETHERFLOW_GATEWAY_AUTH__ISSUER=me`. Values are read as YAML scalars, so numbers and
 * booleans get their types and `[a, b]` is a list.
 *
 * @example
 * ```ts
 * const Schema = z.object({ port: z.number().int().default(8080) }).strict();
 * const config = await loadConfig(Schema, { service: "gateway", file: "gateway.yaml" });
 * ```
 * @module
 */
import { parse as parseYaml } from "yaml";
import type { z } from "zod";

/** Raised for a config that cannot be used; the message names every bad key. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Options for {@link loadConfig}. */
export interface LoadConfigOptions {
  /** Service name; selects the `AETHERFLOW_<SERVICE>_` environment prefix. */
  service: string;
  /** Optional YAML or JSON file; it must exist when given. */
  file?: string | undefined;
  /** Environment to read (default: the process environment). */
  env?: Record<string, string>;
}

/**
 * Load, merge and validate a service's configuration.
 * @throws {ConfigError} naming the bad keys (wrong type, unknown key, out of range)
 */
export async function loadConfig<S extends z.ZodType>(
  schema: S,
  options: LoadConfigOptions,
): Promise<z.output<S>> {
  const sources = new Map<string, string>();
  let raw: Record<string, unknown> = {};
  if (options.file !== undefined) {
    raw = await readConfigFile(options.file);
    for (const key of Object.keys(raw)) sources.set(key, options.file);
  }
  const env = options.env ?? Deno.env.toObject();
  applyEnvOverrides(raw, env, options.service, sources);
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const keys = issue.code === "unrecognized_keys" ? issue.keys : [];
    const path = [...issue.path, ...keys.slice(0, 1)].join(".") || "(root)";
    const source = sources.get(path) ?? sources.get(String(issue.path[0] ?? ""));
    return `${path}: ${issue.message}${source ? ` (from ${source})` : ""}`;
  });
  throw new ConfigError(`Invalid ${options.service} config: ${problems.join("; ")}`);
}

/**
 * {@link loadConfig} for entrypoints: the file comes from `--config PATH` in `args`, and an
 * invalid config prints one clear line and exits with status 2 instead of a stack trace.
 */
export async function loadConfigOrExit<S extends z.ZodType>(
  schema: S,
  service: string,
  args: readonly string[] = Deno.args,
): Promise<z.output<S>> {
  try {
    return await loadConfig(schema, { service, file: configPathFromArgs(args) });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    Deno.exit(2);
  }
}

/** The value of `--config PATH` or `--config=PATH` in `args`, if any. */
export function configPathFromArgs(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--config") return args[i + 1];
    if (arg.startsWith("--config=")) return arg.slice("--config=".length);
  }
  return undefined;
}

async function readConfigFile(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    throw new ConfigError(`Cannot read config file ${file}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (error) {
    throw new ConfigError(`Cannot parse config file ${file}: ${(error as Error).message}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new ConfigError(`Config file ${file} must hold a mapping of keys to values`);
  }
  return parsed as Record<string, unknown>;
}

function applyEnvOverrides(
  target: Record<string, unknown>,
  env: Record<string, string>,
  service: string,
  sources: Map<string, string>,
): void {
  const prefix = `AETHERFLOW_${service.toUpperCase()}_`;
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(prefix)) continue;
    const path = name.slice(prefix.length).split("__").map(snakeToCamel);
    let node = target;
    for (const key of path.slice(0, -1)) {
      const child = node[key];
      if (typeof child !== "object" || child === null || Array.isArray(child)) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    node[path.at(-1)!] = parseEnvValue(value);
    sources.set(path.join("."), name);
  }
}

function snakeToCamel(name: string): string {
  return name.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function parseEnvValue(value: string): unknown {
  try {
    return parseYaml(value);
  } catch {
    return value;
  }
}
