/** Private: validation of document-engine inputs, JSON helpers. */
import { AppError, parseId } from "../kernel/mod.ts";
import type { Limits } from "./limits.ts";
import { jsonBytes } from "./limits.ts";
import type {
  ConflictStrategy,
  CreateDocumentInput,
  DocumentPatch,
  DocumentState,
  DocumentType,
  Json,
  Path,
  Permissions,
} from "./model.ts";

const TYPES = new Set<DocumentType>(["text", "json", "canvas", "board"]);
const STATES = new Set<DocumentState>(["active", "archived", "deleted"]);
const STRATEGIES = new Set<ConflictStrategy>(["merge", "lww", "manual"]);

function invalid(message: string, field: string): AppError {
  return new AppError("INVALID_ARGUMENT", message, { details: { field } });
}

/** A document id, or INVALID_ARGUMENT naming the field. */
export function readDocumentId(value: unknown, field = "documentId"): string {
  try {
    return parseId(value, field);
  } catch (error) {
    throw invalid((error as Error).message, field);
  }
}

/** A user, session or client op id: a non-empty string within the length limit. */
export function readName(value: unknown, field: string, limits: Limits): string {
  if (typeof value !== "string" || value.length === 0) {
    throw invalid(`Invalid ${field}: expected a non-empty string`, field);
  }
  if (value.length > limits.maxIdLength) {
    throw invalid(
      `Invalid ${field}: longer than the limit maxIdLength=${limits.maxIdLength}`,
      field,
    );
  }
  return value;
}

/** A non-negative integer version. */
export function readVersion(value: unknown, field: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw invalid(`Invalid ${field}: expected a non-negative integer`, field);
  }
  return value;
}

/** The default content of a new document of `type`. */
export function defaultContent(type: DocumentType): Json {
  switch (type) {
    case "text":
      return { text: "" };
    case "canvas":
      return { shapes: [] };
    case "board":
      return { columns: [] };
    case "json":
      return {};
  }
}

/** A deep copy of `value` if it is plain JSON (finite numbers, plain objects), else INVALID_ARGUMENT. */
export function readJson(value: unknown, field: string, depth = 0): Json {
  if (depth > 100) throw invalid(`Invalid ${field}: nested too deeply`, field);
  if (value === null || typeof value === "boolean" || typeof value === "string") return value;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw invalid(`Invalid ${field}: numbers must be finite`, field);
    return value;
  }
  if (Array.isArray(value)) return value.map((item) => readJson(item, field, depth + 1));
  if (typeof value === "object") {
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) {
      throw invalid(`Invalid ${field}: expected plain JSON objects`, field);
    }
    const out: { [key: string]: Json } = {};
    for (const [key, item] of Object.entries(value)) {
      Object.defineProperty(out, key, {
        value: readJson(item, field, depth + 1),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }
  throw invalid(`Invalid ${field}: not a JSON value`, field);
}

function readType(value: unknown): DocumentType {
  if (!TYPES.has(value as DocumentType)) {
    throw invalid("Invalid type: expected text, json, canvas or board", "type");
  }
  return value as DocumentType;
}

function readStrategy(value: unknown): ConflictStrategy {
  if (!STRATEGIES.has(value as ConflictStrategy)) {
    throw invalid(
      "Invalid conflictStrategy: expected merge, lww or manual",
      "conflictStrategy",
    );
  }
  return value as ConflictStrategy;
}

function readDocumentName(value: unknown, limits: Limits): string {
  if (typeof value !== "string" || value.trim().length === 0) {
    throw invalid("Invalid name: expected a non-empty string", "name");
  }
  if (value.length > limits.maxNameLength) {
    throw invalid(
      `Invalid name: longer than the limit maxNameLength=${limits.maxNameLength}`,
      "name",
    );
  }
  return value;
}

function readUserList(value: unknown, field: string, limits: Limits): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw invalid(`Invalid ${field}: expected a list of user ids`, field);
  return [...new Set(value.map((item, i) => readName(item, `${field}[${i}]`, limits)))];
}

/** Validated permissions (defaults: nobody else, not public). */
export function readPermissions(value: unknown, limits: Limits): Permissions {
  if (value === undefined) return { editors: [], viewers: [], publicRead: false };
  if (typeof value !== "object" || value === null) {
    throw invalid("Invalid permissions: expected an object", "permissions");
  }
  const raw = value as Partial<Record<keyof Permissions, unknown>>;
  const editors = readUserList(raw.editors, "permissions.editors", limits);
  const viewers = readUserList(raw.viewers, "permissions.viewers", limits);
  if (editors.length + viewers.length > limits.maxPrincipals) {
    throw new AppError(
      "RESOURCE_EXHAUSTED",
      `Too many editors and viewers: over the limit maxPrincipals=${limits.maxPrincipals}`,
      { details: { limit: "maxPrincipals", value: limits.maxPrincipals } },
    );
  }
  if (raw.publicRead !== undefined && typeof raw.publicRead !== "boolean") {
    throw invalid("Invalid permissions.publicRead: expected a boolean", "permissions.publicRead");
  }
  return { editors, viewers, publicRead: raw.publicRead === true };
}

/** Validated metadata (string values, within the size limit). */
export function readMetadata(value: unknown, limits: Limits): Record<string, string> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid("Invalid metadata: expected a map of strings", "metadata");
  }
  const out: Record<string, string> = {};
  for (const [key, item] of Object.entries(value)) {
    if (typeof item !== "string") {
      throw invalid(`Invalid metadata.${key}: expected a string`, `metadata.${key}`);
    }
    Object.defineProperty(out, key, { value: item, enumerable: true, writable: true });
  }
  if (jsonBytes(out) > limits.maxMetadataBytes) {
    throw new AppError(
      "RESOURCE_EXHAUSTED",
      `Metadata is over the limit maxMetadataBytes=${limits.maxMetadataBytes}`,
      { details: { limit: "maxMetadataBytes", value: limits.maxMetadataBytes } },
    );
  }
  return out;
}

/** A validated create input with defaults filled in (content not yet size-checked). */
export function readCreateInput(
  input: CreateDocumentInput,
  limits: Limits,
): Required<Omit<CreateDocumentInput, "permissions">> & { permissions: Permissions } {
  if (typeof input !== "object" || input === null) {
    throw invalid("Invalid document: expected an object", "input");
  }
  const type = readType(input.type);
  return {
    name: readDocumentName(input.name, limits),
    type,
    content: input.content === undefined
      ? defaultContent(type)
      : readJson(input.content, "content"),
    permissions: readPermissions(input.permissions, limits),
    metadata: readMetadata(input.metadata, limits),
    conflictStrategy: input.conflictStrategy === undefined
      ? "merge"
      : readStrategy(input.conflictStrategy),
  };
}

/** A validated patch (only the fields present). */
export function readPatch(patch: DocumentPatch, limits: Limits): DocumentPatch {
  if (typeof patch !== "object" || patch === null) {
    throw invalid("Invalid patch: expected an object", "patch");
  }
  const out: DocumentPatch = {};
  if (patch.name !== undefined) out.name = readDocumentName(patch.name, limits);
  if (patch.state !== undefined) {
    if (!STATES.has(patch.state)) {
      throw invalid("Invalid state: expected active, archived or deleted", "state");
    }
    out.state = patch.state;
  }
  if (patch.permissions !== undefined) {
    out.permissions = readPermissions(patch.permissions, limits);
  }
  if (patch.metadata !== undefined) out.metadata = readMetadata(patch.metadata, limits);
  if (patch.conflictStrategy !== undefined) {
    out.conflictStrategy = readStrategy(patch.conflictStrategy);
  }
  return out;
}

/** Structural equality of JSON values (`undefined` = absent). */
export function jsonEqual(a: Json | undefined, b: Json | undefined): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((item, i) => jsonEqual(item, b[i]));
  }
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((key) => Object.hasOwn(b, key) && jsonEqual(a[key], b[key]));
}

/** The value at `path`, or undefined when the path does not exist. */
export function valueAt(doc: Json, path: Path): Json | undefined {
  let node: Json | undefined = doc;
  for (const segment of path) {
    if (typeof segment === "number") {
      if (!Array.isArray(node)) return undefined;
      node = node[segment];
    } else {
      if (typeof node !== "object" || node === null || Array.isArray(node)) return undefined;
      if (!Object.hasOwn(node, segment)) return undefined;
      node = node[segment];
    }
    if (node === undefined) return undefined;
  }
  return node;
}
