/**
 * Generates the configuration reference in deploy/README.md (between the
 * `<!-- config:begin -->` and `<!-- config:end -->` markers) from the services' zod config
 * schemas: every key, its type, its default and its environment override. Run
 * `deno task config:docs` after changing a schema; `--check` exits 1 when the committed
 * table is stale (tests/deploy_test.ts runs the same comparison).
 *
 * @example
 * ```ts
 * const rows = await configRows("gateway");
 * console.log(rows[0]); // { key: "mode", env: "AETHERFLOW_GATEWAY_MODE", ... }
 * ```
 * @module
 */
import { fileURLToPath } from "node:url";
import { configSchema, envPrefix, type ServiceName, SERVICES } from "./services.ts";

/** One documented configuration key. */
export interface ConfigRow {
  /** Dotted key path as written in a config file, e.g. `auth.issuer`. */
  readonly key: string;
  /** The environment variable that overrides it. */
  readonly env: string;
  /** Human-readable type, e.g. `integer 0..65535` or `"kv" | "memory"`. */
  readonly type: string;
  /** JSON text of the default, or `(unset)`. */
  readonly defaultValue: string;
  /**
   * Keys that must be set too when this one is overridden: siblings without a default of
   * their own (setting one key of such an object replaces the object's default).
   */
  readonly requires?: readonly string[];
}

/** The README the reference lives in. */
export const README_PATH: string = fileURLToPath(new URL("./README.md", import.meta.url));
const BEGIN = "<!-- config:begin -->";
const END = "<!-- config:end -->";

// Zod v4 keeps its definition on `_zod.def`; only the parts read here are typed.
interface Def {
  type: string;
  shape?: Record<string, Schema>;
  innerType?: Schema;
  element?: Schema;
  entries?: Record<string, string>;
  options?: Schema[];
  values?: unknown[];
  checks?: { _zod: { def: Check } }[];
  format?: string;
}
interface Check {
  check: string;
  value?: number;
  inclusive?: boolean;
  minimum?: number;
  format?: string;
}
interface Schema {
  _zod: { def: Def };
}

/**
 * Every leaf key of a service's config schema, in schema order.
 * @throws {RangeError} when the service has no config schema
 */
export async function configRows(name: ServiceName): Promise<ConfigRow[]> {
  const schema = await configSchema(name);
  if (!schema) throw new RangeError(`${name} has no config schema`);
  const defaults = schema.parse({});
  const rows: ConfigRow[] = [];
  walk(schema as unknown as Schema, [], [], (path, leaf, requires) => {
    const value = path.reduce<unknown>(
      (node, key) => (node as Record<string, unknown> | undefined)?.[key],
      defaults,
    );
    rows.push({
      key: path.join("."),
      env: envPrefix(name) + path.map(camelToSnake).join("__"),
      type: describe(leaf),
      defaultValue: value === undefined ? "(unset)" : JSON.stringify(value),
      ...(requires.length ? { requires } : {}),
    });
  });
  return rows;
}

/** The generated Markdown (unformatted) for every service that has a schema. */
export async function generateReference(): Promise<string> {
  const parts: string[] = [];
  for (const { name } of SERVICES) {
    const schema = await configSchema(name);
    parts.push(`### ${name}`, "");
    if (!schema) {
      parts.push(`No config schema is exported by \`${name}\` yet.`, "");
      continue;
    }
    parts.push("| key | environment override | type | default |", "|---|---|---|---|");
    for (const row of await configRows(name)) {
      const note = row.requires
        ? ` (set ${row.requires.map((key) => `\`${key}\``).join(", ")} too)`
        : "";
      const cells = [
        `\`${row.key}\``,
        `\`${row.env}\``,
        escape(row.type) + note,
        code(row.defaultValue),
      ];
      parts.push(`| ${cells.join(" | ")} |`);
    }
    parts.push("");
  }
  return parts.join("\n");
}

/**
 * The README text with the reference section replaced by the generated one, formatted by
 * `deno fmt` so the committed file stays fmt-clean.
 * @throws {SyntaxError} when the README lacks the markers
 */
export async function renderReadme(readme: string): Promise<string> {
  const begin = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  if (begin < 0 || end < begin) {
    throw new SyntaxError(`Cannot find ${BEGIN} ... ${END} in the README`);
  }
  const text = readme.slice(0, begin + BEGIN.length) + "\n\n" + await generateReference() +
    "\n" + readme.slice(end);
  return await denoFmtMarkdown(text);
}

async function denoFmtMarkdown(text: string): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--ext", "md", "-"],
    cwd: fileURLToPath(new URL("..", import.meta.url)),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const output = await child.output();
  if (!output.success) throw new Error(new TextDecoder().decode(output.stderr));
  return new TextDecoder().decode(output.stdout);
}

/**
 * Visit every leaf key with the keys that must be set along with it: at every level of its
 * path, the siblings that have no default of their own.
 */
function walk(
  schema: Schema,
  path: string[],
  requires: string[],
  leaf: (path: string[], schema: Schema, requires: string[]) => void,
) {
  const inner = unwrap(schema);
  const shape = inner._zod.def.shape;
  if (inner._zod.def.type === "object" && shape) {
    for (const [key, child] of Object.entries(shape)) {
      const needed = Object.entries(shape)
        .filter(([other, sibling]) => other !== key && !hasOwnDefault(sibling))
        .map(([other]) => [...path, other].join("."));
      walk(child, [...path, key], [...requires, ...needed], leaf);
    }
  } else {
    leaf(path, inner, requires);
  }
}

function hasOwnDefault(schema: Schema): boolean {
  const type = schema._zod.def.type;
  return type === "default" || type === "prefault" || type === "optional";
}

function unwrap(schema: Schema): Schema {
  let node = schema;
  while (node._zod.def.innerType) node = node._zod.def.innerType;
  return node;
}

function describe(schema: Schema): string {
  const def = unwrap(schema)._zod.def;
  switch (def.type) {
    case "enum":
      return Object.values(def.entries ?? {}).map((v) => JSON.stringify(v)).join(" \\| ");
    case "literal":
      return (def.values ?? []).map((v) => JSON.stringify(v)).join(" \\| ");
    case "array":
      return `list of ${describe(def.element!)}`;
    case "union":
      return (def.options ?? []).map(describe).join(" or ");
    case "number": {
      const checks = (def.checks ?? []).map((c) => c._zod.def);
      const integer = checks.some((c) => c.format === "safeint" || c.format === "int32");
      return [integer ? "integer" : "number", ...bounds(checks)].join(" ");
    }
    case "string": {
      const checks = (def.checks ?? []).map((c) => c._zod.def);
      const min = checks.find((c) => c.check === "min_length")?.minimum;
      const base = def.format === "url" ? "URL" : "string";
      return min !== undefined && min > 1 ? `${base} (>= ${min} chars)` : base;
    }
    default:
      return def.type;
  }
}

function bounds(checks: Check[]): string[] {
  const out: string[] = [];
  for (const c of checks) {
    if (c.check === "greater_than") out.push(`${c.inclusive ? ">=" : ">"} ${c.value}`);
    if (c.check === "less_than") out.push(`${c.inclusive ? "<=" : "<"} ${c.value}`);
  }
  return out.length ? [out.join(", ")] : [];
}

function camelToSnake(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase();
}

function code(text: string): string {
  return text === "(unset)" ? text : `\`${text.replaceAll("|", "\\|")}\``;
}

function escape(text: string): string {
  return text.replaceAll("`", "");
}

if (import.meta.main) {
  const readme = await Deno.readTextFile(README_PATH);
  const rendered = await renderReadme(readme);
  if (Deno.args.includes("--check")) {
    if (rendered !== readme) {
      console.error("deploy/README.md configuration reference is stale: run deno task config:docs");
      Deno.exit(1);
    }
    console.log("deploy/README.md configuration reference is up to date");
  } else {
    await Deno.writeTextFile(README_PATH, rendered);
    console.log(`Wrote the configuration reference to ${README_PATH}`);
  }
}
