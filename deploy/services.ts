/**
 * The services AetherFlow deploys, where their entrypoints and binaries are, and their
 * config schemas (the export `<Name>ConfigSchema`, any capitalisation, of the package's
 * `mod.ts`, else of its `config.ts`).
 * Used by the deployment tests and by `deno task config:docs`, so manifests, the
 * Dockerfile and the configuration reference all follow the code.
 *
 * @example
 * ```ts
 * for (const service of SERVICES) {
 *   const schema = await configSchema(service.name);
 *   console.log(service.name, service.entry, schema ? "has a schema" : "no schema yet");
 * }
 * ```
 * @module
 */
import type { z } from "zod";
import * as gateway from "../gateway/mod.ts";
import * as session from "../session/mod.ts";
import * as statesync from "../statesync/mod.ts";

/** Name of a deployable service; also its `AETHERFLOW_<SERVICE>_` env prefix. */
export type ServiceName = "gateway" | "session" | "statesync";

/** One deployable service. */
export interface ServiceSpec {
  /** Service name (lower case). */
  readonly name: ServiceName;
  /** Entrypoint, relative to the repository root. */
  readonly entry: string;
  /** Binary name built by `deno task compile` (in `dist/`) and shipped in the image (`/app`). */
  readonly binary: string;
  /** Bundle file built by `deno task bundle` (in `dist/`). */
  readonly bundle: string;
}

/** Every deployable service, in start order. */
export const SERVICES: readonly ServiceSpec[] = [
  service("session"),
  service("statesync"),
  service("gateway"),
];

/** The all-in-one binary: every service in one process (see deploy/aetherflow.ts). */
export const ALL_IN_ONE: {
  readonly entry: string;
  readonly binary: string;
  readonly bundle: string;
} = {
  entry: "deploy/aetherflow.ts",
  binary: "aetherflow",
  bundle: "aetherflow.js",
};

/** Prefix of a service's environment overrides, e.g. `AETHERFLOW_GATEWAY_`. */
export function envPrefix(name: ServiceName): string {
  return `AETHERFLOW_${name.toUpperCase()}_`;
}

const MODULES: Record<ServiceName, Record<string, unknown>> = { gateway, session, statesync };

/**
 * The zod config schema a service exports (`<Name>ConfigSchema`, e.g. `StateSyncConfigSchema`,
 * from its `mod.ts`, or else from its `config.ts`), or undefined when it has none (yet).
 * @throws {TypeError} when a module exports more than one config schema
 */
export async function configSchema(name: ServiceName): Promise<z.ZodType | undefined> {
  const fromMod = findSchema(name, MODULES[name]);
  if (fromMod) return fromMod;
  const file = new URL(`../${name}/config.ts`, import.meta.url);
  try {
    await Deno.stat(file);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  return findSchema(name, await import(file.href));
}

function findSchema(name: string, module: Record<string, unknown>): z.ZodType | undefined {
  const found = Object.entries(module).filter(([key, value]) =>
    key.toLowerCase() === `${name}configschema` && isZodSchema(value)
  );
  if (found.length > 1) {
    throw new TypeError(
      `${name} exports several config schemas: ${found.map(([key]) => key).join(", ")}`,
    );
  }
  return found[0]?.[1] as z.ZodType | undefined;
}

function isZodSchema(value: unknown): boolean {
  return typeof value === "object" && value !== null &&
    typeof (value as { safeParse?: unknown }).safeParse === "function";
}

function service(name: ServiceName): ServiceSpec {
  return {
    name,
    entry: `${name}/main.ts`,
    binary: `aetherflow-${name}`,
    bundle: `aetherflow-${name}.js`,
  };
}
