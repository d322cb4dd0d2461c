/**
 * JSON shapes of the public API (REST and WebSocket) and their conversion to and from the
 * protobuf messages. Enums are short lower-case names ("text", "active"); JSON values are
 * real JSON, not JSON text; paths are arrays of keys (strings) and indexes (numbers).
 * @module
 */
import { z } from "zod";
import { AppError } from "../kernel/mod.ts";
import {
  type Session,
  SessionState,
  sessionStateFromJSON,
  sessionStateToJSON,
} from "../proto/gen/session.ts";
import {
  type Conflict,
  ConflictSide,
  ConflictState,
  conflictStateToJSON,
  ConflictStrategy,
  conflictStrategyFromJSON,
  conflictStrategyToJSON,
  type Document,
  type DocumentEvent,
  DocumentState,
  documentStateFromJSON,
  documentStateToJSON,
  DocumentType,
  documentTypeFromJSON,
  documentTypeToJSON,
  eventTypeToJSON,
  type Lock,
  type OpComponent,
  type Operation,
  type PathElement,
  type Presence,
} from "../proto/gen/statesync.ts";

/** A JSON path: object keys and list indexes. */
export const PathSchema = z.array(z.union([z.string(), z.number().int().min(0)])).max(64);

const Json = z.unknown().refine((v) => v !== undefined, "expected a JSON value");

/** One operation component as clients send it. */
export const ComponentSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("set"), path: PathSchema, value: Json }).strict(),
  z.object({ type: z.literal("delete"), path: PathSchema }).strict(),
  z.object({
    type: z.literal("text_insert"),
    path: PathSchema,
    offset: z.number().int().min(0),
    text: z.string(),
  }).strict(),
  z.object({
    type: z.literal("text_delete"),
    path: PathSchema,
    offset: z.number().int().min(0),
    length: z.number().int().min(1),
  }).strict(),
  z.object({
    type: z.literal("list_insert"),
    path: PathSchema,
    index: z.number().int().min(0),
    value: Json,
  }).strict(),
  z.object({ type: z.literal("list_delete"), path: PathSchema, index: z.number().int().min(0) })
    .strict(),
  z.object({
    type: z.literal("list_move"),
    path: PathSchema,
    from: z.number().int().min(0),
    to: z.number().int().min(0),
  }).strict(),
  z.object({ type: z.literal("increment"), path: PathSchema, delta: z.number() }).strict(),
]);

/** A component in its JSON form. */
export type ComponentJson = z.output<typeof ComponentSchema>;

/** An operation as clients submit it. */
export const OperationInputSchema = z.object({
  base_version: z.number().int().min(0),
  client_op_id: z.string().min(1).max(128).optional(),
  components: z.array(ComponentSchema).min(1).max(1000),
}).strict();

/** Path in proto form. */
export function toProtoPath(path: readonly (string | number)[]): PathElement[] {
  return path.map((element) =>
    typeof element === "string"
      ? { element: { $case: "key", value: element } }
      : { element: { $case: "index", value: element } }
  );
}

/** Path in JSON form. */
export function fromProtoPath(path: readonly PathElement[]): (string | number)[] {
  return path.map((p) => p.element?.value ?? "");
}

/** A JSON component as a proto component. */
export function toProtoComponent(c: ComponentJson): OpComponent {
  const path = toProtoPath(c.path);
  switch (c.type) {
    case "set":
      return { path, action: { $case: "set", value: { valueJson: JSON.stringify(c.value) } } };
    case "delete":
      return { path, action: { $case: "delete", value: {} } };
    case "text_insert":
      return { path, action: { $case: "textInsert", value: { offset: c.offset, text: c.text } } };
    case "text_delete":
      return {
        path,
        action: { $case: "textDelete", value: { offset: c.offset, length: c.length } },
      };
    case "list_insert":
      return {
        path,
        action: {
          $case: "listInsert",
          value: { index: c.index, valueJson: JSON.stringify(c.value) },
        },
      };
    case "list_delete":
      return { path, action: { $case: "listDelete", value: { index: c.index } } };
    case "list_move":
      return { path, action: { $case: "listMove", value: { from: c.from, to: c.to } } };
    case "increment":
      return { path, action: { $case: "increment", value: { delta: c.delta } } };
  }
}

/** A proto component as JSON. */
export function fromProtoComponent(c: OpComponent): Record<string, unknown> {
  const path = fromProtoPath(c.path);
  const action = c.action;
  switch (action?.$case) {
    case "set":
      return { type: "set", path, value: parseJson(action.value.valueJson) };
    case "delete":
      return { type: "delete", path };
    case "textInsert":
      return { type: "text_insert", path, offset: action.value.offset, text: action.value.text };
    case "textDelete":
      return {
        type: "text_delete",
        path,
        offset: action.value.offset,
        length: action.value.length,
      };
    case "listInsert":
      return {
        type: "list_insert",
        path,
        index: action.value.index,
        value: parseJson(action.value.valueJson),
      };
    case "listDelete":
      return { type: "list_delete", path, index: action.value.index };
    case "listMove":
      return { type: "list_move", path, from: action.value.from, to: action.value.to };
    case "increment":
      return { type: "increment", path, delta: action.value.delta };
    default:
      return { type: "unknown", path };
  }
}

/** An operation as JSON. */
export function operationToJson(op: Operation | undefined): Record<string, unknown> | null {
  if (op === undefined) return null;
  return {
    id: op.id,
    document_id: op.documentId,
    base_version: op.baseVersion,
    version: op.version,
    author_id: op.authorId,
    session_id: op.sessionId,
    client_op_id: op.clientOpId,
    timestamp: op.timestamp,
    components: op.components.map(fromProtoComponent),
  };
}

function shortName(full: string, prefix: string): string {
  return full.startsWith(prefix) ? full.slice(prefix.length).toLowerCase() : full.toLowerCase();
}

function enumParser<E>(prefix: string, fromJSON: (v: unknown) => E, unspecified: E) {
  return (name: string | undefined): E => {
    if (name === undefined) return unspecified;
    const value = fromJSON(prefix + name.toUpperCase());
    if ((value as unknown as number) <= 0) {
      throw new AppError("INVALID_ARGUMENT", `Invalid value "${name}"`);
    }
    return value;
  };
}

/** Document type names. */
export const DOCUMENT_TYPES = ["text", "json", "canvas", "board"] as const;
/** Document state names. */
export const DOCUMENT_STATES = ["active", "archived", "deleted"] as const;
/** Conflict strategy names. */
export const CONFLICT_STRATEGIES = ["merge", "lww", "manual"] as const;
/** Session state names. */
export const SESSION_STATES = ["active", "idle", "expired", "terminated"] as const;

/** Parse a document type name. */
export const parseDocumentType = enumParser(
  "DOCUMENT_TYPE_",
  documentTypeFromJSON,
  DocumentType.DOCUMENT_TYPE_UNSPECIFIED,
);
/** Parse a document state name. */
export const parseDocumentState = enumParser(
  "DOCUMENT_STATE_",
  documentStateFromJSON,
  DocumentState.DOCUMENT_STATE_UNSPECIFIED,
);
/** Parse a conflict strategy name. */
export const parseConflictStrategy = enumParser(
  "CONFLICT_STRATEGY_",
  conflictStrategyFromJSON,
  ConflictStrategy.CONFLICT_STRATEGY_UNSPECIFIED,
);
/** Parse a session state name. */
export const parseSessionState = enumParser(
  "SESSION_STATE_",
  sessionStateFromJSON,
  SessionState.SESSION_STATE_UNSPECIFIED,
);
/** Conflict side names to proto. */
export function parseConflictSide(side: "applied" | "incoming"): ConflictSide {
  return side === "applied"
    ? ConflictSide.CONFLICT_SIDE_APPLIED
    : ConflictSide.CONFLICT_SIDE_INCOMING;
}

/** A document as JSON (content parsed). */
export function documentToJson(doc: Document): Record<string, unknown> {
  return {
    id: doc.id,
    name: doc.name,
    type: shortName(documentTypeToJSON(doc.type), "DOCUMENT_TYPE_"),
    state: shortName(documentStateToJSON(doc.state), "DOCUMENT_STATE_"),
    owner_id: doc.ownerId,
    permissions: doc.permissions
      ? {
        editors: doc.permissions.editors,
        viewers: doc.permissions.viewers,
        public_read: doc.permissions.publicRead,
      }
      : null,
    version: doc.version,
    content: doc.contentJson === "" ? null : parseJson(doc.contentJson),
    active_users: doc.activeUsers,
    created_at: doc.createdAt,
    updated_at: doc.updatedAt,
    metadata: doc.metadata,
    conflict_strategy: shortName(
      conflictStrategyToJSON(doc.conflictStrategy),
      "CONFLICT_STRATEGY_",
    ),
  };
}

/** A session as JSON. */
export function sessionToJson(s: Session): Record<string, unknown> {
  return {
    id: s.id,
    user_id: s.userId,
    connection_id: s.connectionId,
    client_ip: s.clientIp,
    client_port: s.clientPort,
    server_address: s.serverAddress,
    state: shortName(sessionStateToJSON(s.state), "SESSION_STATE_"),
    created_at: s.createdAt,
    last_active_at: s.lastActiveAt,
    expires_at: s.expiresAt,
    metadata: s.metadata,
    stats: s.stats
      ? {
        messages_in: s.stats.messagesIn,
        messages_out: s.stats.messagesOut,
        bytes_in: s.stats.bytesIn,
        bytes_out: s.stats.bytesOut,
        operations: s.stats.operations,
      }
      : null,
  };
}

/** A lock as JSON. */
export function lockToJson(lock: Lock): Record<string, unknown> {
  return {
    id: lock.id,
    document_id: lock.documentId,
    path: fromProtoPath(lock.path),
    owner_id: lock.ownerId,
    session_id: lock.sessionId,
    acquired_at: lock.acquiredAt,
    expires_at: lock.expiresAt,
    fencing_token: lock.fencingToken,
  };
}

/** A conflict as JSON. */
export function conflictToJson(c: Conflict): Record<string, unknown> {
  return {
    id: c.id,
    document_id: c.documentId,
    path: fromProtoPath(c.path),
    strategy: shortName(conflictStrategyToJSON(c.strategy), "CONFLICT_STRATEGY_"),
    state: shortName(
      conflictStateToJSON(c.state ?? ConflictState.CONFLICT_STATE_UNSPECIFIED),
      "CONFLICT_STATE_",
    ),
    applied_operation: operationToJson(c.appliedOperation),
    incoming_operation: operationToJson(c.incomingOperation),
    applied_value: parseJson(c.appliedValueJson),
    incoming_value: parseJson(c.incomingValueJson),
    resolved_value: parseJson(c.resolvedValueJson),
    created_at: c.createdAt,
    resolved_at: c.resolvedAt,
    resolved_by: c.resolvedBy,
  };
}

/** A presence record as JSON. */
export function presenceToJson(p: Presence): Record<string, unknown> {
  return {
    user_id: p.userId,
    session_id: p.sessionId,
    state: parseJson(p.stateJson),
    updated_at: p.updatedAt,
    expires_at: p.expiresAt,
  };
}

/** Event type names by value, computed once (every event of every document needs one). */
const EVENT_NAMES = new Map<number, string>();

function eventName(type: DocumentEvent["type"]): string {
  let name = EVENT_NAMES.get(type);
  if (name === undefined) {
    name = shortName(eventTypeToJSON(type), "EVENT_TYPE_");
    EVENT_NAMES.set(type, name);
  }
  return name;
}

/** A document event as JSON (the WebSocket `event` payload). */
export function eventToJson(e: DocumentEvent): Record<string, unknown> {
  const out: Record<string, unknown> = {
    event: eventName(e.type),
    document_id: e.documentId,
    version: e.version,
    timestamp: e.timestamp,
    user_id: e.userId,
  };
  const payload = e.payload;
  switch (payload?.$case) {
    case "operation":
      out.operation = operationToJson(payload.value);
      break;
    case "document":
      out.document = documentToJson(payload.value);
      break;
    case "conflict":
      out.conflict = conflictToJson(payload.value);
      break;
    case "lock":
      out.lock = lockToJson(payload.value);
      break;
    case "presence":
      out.presence = presenceToJson(payload.value);
      break;
    case "reason":
      out.reason = payload.value;
      break;
  }
  return out;
}

function parseJson(text: string): unknown {
  if (text === "") return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
