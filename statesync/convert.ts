/**
 * Conversion between the gRPC messages of `proto/statesync.proto` (ts-proto, in proto/gen)
 * and the statesync model records. Incoming values are validated here: a bad field becomes
 * a `TypeError` naming it (INVALID_ARGUMENT at the boundary), never an INTERNAL error.
 *
 * @example
 * ```ts
 * const op = opFromProto(request.operation?.components ?? [], "operation.components");
 * const message = operationToProto(result.operation);
 * ```
 * @module
 */
import type { Json, Op, Path } from "./json0/types.ts";
import { OpError, parseOp } from "./json0/mod.ts";
import type {
  ConflictRecord,
  ConflictStrategy,
  DocumentRecord,
  DocumentState,
  DocumentType,
  OperationRecord,
  Permissions,
} from "./model.ts";
import type { DocEvent, EventType, LockRecord, PresenceRecord } from "./events.ts";
import * as pb from "../proto/gen/statesync.ts";

// ---- JSON text ---------------------------------------------------------------------------

/**
 * Parse JSON text from a `*_json` field.
 * @throws {TypeError} naming `field` when the text is not JSON
 */
export function jsonFromText(text: string, field: string): Json {
  try {
    return JSON.parse(text) as Json;
  } catch {
    throw new TypeError(`Invalid ${field}: not valid JSON text`);
  }
}

/** JSON text for a `*_json` field; `undefined` (a deleted value) becomes "". */
export function jsonToText(value: Json | undefined): string {
  return value === undefined ? "" : JSON.stringify(value);
}

// ---- Paths and operations -----------------------------------------------------------------

/**
 * A model path from proto path elements. With `component` the elements are
 * `field[component].path` of an op; that name is built only for an error (this runs for every
 * op).
 * @throws {TypeError} naming the field for an element without key or index
 */
export function pathFromProto(
  elements: readonly pb.PathElement[],
  field: string,
  component = -1,
): Path {
  const path: (string | number)[] = new Array(elements.length);
  for (let i = 0; i < elements.length; i++) {
    const element = elements[i]!.element;
    if (element === undefined) {
      const name = component < 0 ? field : `${field}[${component}].path`;
      throw new TypeError(`Invalid ${name}[${i}]: expected a key or an index`);
    }
    path[i] = element.value;
  }
  return path;
}

/** Proto path elements from a model path. */
export function pathToProto(path: Path): pb.PathElement[] {
  return path.map((step) => ({
    element: typeof step === "number"
      ? { $case: "index" as const, value: step }
      : { $case: "key" as const, value: step },
  }));
}

/**
 * A validated json0 op from proto components.
 * @throws {TypeError} naming the field (e.g. `operation.components[1].set.value_json`) for a
 *   missing action, bad JSON or an op `parseOp` refuses
 */
export function opFromProto(components: readonly pb.OpComponent[], field: string): Op {
  const raw: unknown[] = new Array(components.length);
  for (let i = 0; i < components.length; i++) {
    raw[i] = componentFromProto(components[i]!, field, i);
  }
  try {
    return parseOp(raw);
  } catch (error) {
    if (error instanceof OpError) {
      throw new TypeError(`Invalid ${field}: ${error.message.replace(/^op\b/, "components")}`);
    }
    throw error;
  }
}

/** One raw component (checked by `parseOp` next); field names are built only for errors. */
function componentFromProto(component: pb.OpComponent, field: string, i: number): unknown {
  const path = pathFromProto(component.path, field, i);
  const action = component.action;
  switch (action?.$case) {
    case "set":
      return {
        path,
        action: {
          type: "set",
          value: jsonFromText(action.value.valueJson, `${field}[${i}].set.value_json`),
        },
      };
    case "delete":
      return { path, action: { type: "delete" } };
    case "textInsert":
      return {
        path,
        action: { type: "text_insert", offset: action.value.offset, text: action.value.text },
      };
    case "textDelete":
      return {
        path,
        action: { type: "text_delete", offset: action.value.offset, length: action.value.length },
      };
    case "listInsert":
      return {
        path,
        action: {
          type: "list_insert",
          index: action.value.index,
          value: jsonFromText(action.value.valueJson, `${field}[${i}].list_insert.value_json`),
        },
      };
    case "listDelete":
      return { path, action: { type: "list_delete", index: action.value.index } };
    case "listMove":
      return {
        path,
        action: { type: "list_move", from: action.value.from, to: action.value.to },
      };
    case "increment":
      return { path, action: { type: "increment", delta: action.value.delta } };
    default:
      throw new TypeError(`Invalid ${field}[${i}]: expected an action`);
  }
}

/** Proto components from a json0 op. */
export function opToProto(op: Op): pb.OpComponent[] {
  return op.map(({ path, action }) => {
    const p = pathToProto(path);
    switch (action.type) {
      case "set":
        return {
          path: p,
          action: { $case: "set", value: { valueJson: JSON.stringify(action.value) } },
        };
      case "delete":
        return { path: p, action: { $case: "delete", value: {} } };
      case "text_insert":
        return {
          path: p,
          action: { $case: "textInsert", value: { offset: action.offset, text: action.text } },
        };
      case "text_delete":
        return {
          path: p,
          action: { $case: "textDelete", value: { offset: action.offset, length: action.length } },
        };
      case "list_insert":
        return {
          path: p,
          action: {
            $case: "listInsert",
            value: { index: action.index, valueJson: JSON.stringify(action.value) },
          },
        };
      case "list_delete":
        return { path: p, action: { $case: "listDelete", value: { index: action.index } } };
      case "list_move":
        return {
          path: p,
          action: { $case: "listMove", value: { from: action.from, to: action.to } },
        };
      case "increment":
        return { path: p, action: { $case: "increment", value: { delta: action.delta } } };
    }
  });
}

/** A proto Operation from an operation record. */
export function operationToProto(record: OperationRecord): pb.Operation {
  return {
    id: record.id,
    documentId: record.documentId,
    baseVersion: record.baseVersion,
    version: record.version,
    authorId: record.authorId,
    sessionId: record.sessionId,
    clientOpId: record.clientOpId,
    timestamp: record.timestamp,
    components: opToProto(record.op),
  };
}

// ---- Enums ----------------------------------------------------------------------------------

const DOCUMENT_TYPES: Record<DocumentType, pb.DocumentType> = {
  text: pb.DocumentType.DOCUMENT_TYPE_TEXT,
  json: pb.DocumentType.DOCUMENT_TYPE_JSON,
  canvas: pb.DocumentType.DOCUMENT_TYPE_CANVAS,
  board: pb.DocumentType.DOCUMENT_TYPE_BOARD,
};
const DOCUMENT_STATES: Record<DocumentState, pb.DocumentState> = {
  active: pb.DocumentState.DOCUMENT_STATE_ACTIVE,
  archived: pb.DocumentState.DOCUMENT_STATE_ARCHIVED,
  deleted: pb.DocumentState.DOCUMENT_STATE_DELETED,
};
const STRATEGIES: Record<ConflictStrategy, pb.ConflictStrategy> = {
  merge: pb.ConflictStrategy.CONFLICT_STRATEGY_MERGE,
  lww: pb.ConflictStrategy.CONFLICT_STRATEGY_LWW,
  manual: pb.ConflictStrategy.CONFLICT_STRATEGY_MANUAL,
};
const CONFLICT_STATES: Record<ConflictRecord["state"], pb.ConflictState> = {
  open: pb.ConflictState.CONFLICT_STATE_OPEN,
  resolved: pb.ConflictState.CONFLICT_STATE_RESOLVED,
  auto_resolved: pb.ConflictState.CONFLICT_STATE_AUTO_RESOLVED,
};
const EVENT_TYPES: Record<EventType, pb.EventType> = {
  operation_applied: pb.EventType.EVENT_TYPE_OPERATION_APPLIED,
  document_updated: pb.EventType.EVENT_TYPE_DOCUMENT_UPDATED,
  user_joined: pb.EventType.EVENT_TYPE_USER_JOINED,
  user_left: pb.EventType.EVENT_TYPE_USER_LEFT,
  conflict_detected: pb.EventType.EVENT_TYPE_CONFLICT_DETECTED,
  conflict_resolved: pb.EventType.EVENT_TYPE_CONFLICT_RESOLVED,
  lock_acquired: pb.EventType.EVENT_TYPE_LOCK_ACQUIRED,
  lock_released: pb.EventType.EVENT_TYPE_LOCK_RELEASED,
  presence_updated: pb.EventType.EVENT_TYPE_PRESENCE_UPDATED,
  resync_required: pb.EventType.EVENT_TYPE_RESYNC_REQUIRED,
  subscribed: pb.EventType.EVENT_TYPE_SUBSCRIBED,
};

function invert<K extends string>(table: Record<K, number>): Map<number, K> {
  return new Map(Object.entries(table).map(([k, v]) => [v as number, k as K]));
}
const DOCUMENT_TYPE_NAMES = invert(DOCUMENT_TYPES);
const DOCUMENT_STATE_NAMES = invert(DOCUMENT_STATES);
const STRATEGY_NAMES = invert(STRATEGIES);

function enumFromProto<K>(names: Map<number, K>, value: number, field: string): K {
  const name = names.get(value);
  if (name === undefined) throw new TypeError(`Invalid ${field}: unknown value ${value}`);
  return name;
}

/** @throws {TypeError} naming `field` for UNSPECIFIED or an unknown value */
export function documentTypeFromProto(value: pb.DocumentType, field = "type"): DocumentType {
  return enumFromProto(DOCUMENT_TYPE_NAMES, value, field);
}

/** @throws {TypeError} naming `field` for UNSPECIFIED or an unknown value */
export function documentStateFromProto(value: pb.DocumentState, field = "state"): DocumentState {
  return enumFromProto(DOCUMENT_STATE_NAMES, value, field);
}

/** @throws {TypeError} naming `field` for UNSPECIFIED or an unknown value */
export function strategyFromProto(
  value: pb.ConflictStrategy,
  field = "conflict_strategy",
): ConflictStrategy {
  return enumFromProto(STRATEGY_NAMES, value, field);
}

// ---- Records --------------------------------------------------------------------------------

/** Proto permissions from model permissions. */
export function permissionsToProto(permissions: Permissions): pb.Permissions {
  return {
    editors: [...permissions.editors],
    viewers: [...permissions.viewers],
    publicRead: permissions.publicRead,
  };
}

/** A proto Document; `withContent: false` leaves `content_json` empty (listings). */
export function documentToProto(
  record: DocumentRecord | Omit<DocumentRecord, "content">,
  options: { activeUsers?: string[]; withContent?: boolean } = {},
): pb.Document {
  const content = "content" in record && options.withContent !== false
    ? JSON.stringify(record.content)
    : "";
  return {
    id: record.id,
    name: record.name,
    type: DOCUMENT_TYPES[record.type],
    state: DOCUMENT_STATES[record.state],
    ownerId: record.ownerId,
    permissions: permissionsToProto(record.permissions),
    version: record.version,
    contentJson: content,
    activeUsers: options.activeUsers ?? [],
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    metadata: { ...record.metadata },
    conflictStrategy: STRATEGIES[record.conflictStrategy],
  };
}

/** A proto Conflict. */
export function conflictToProto(record: ConflictRecord): pb.Conflict {
  return {
    id: record.id,
    documentId: record.documentId,
    path: pathToProto(record.path),
    strategy: STRATEGIES[record.strategy],
    state: CONFLICT_STATES[record.state],
    appliedOperation: operationToProto(record.applied),
    incomingOperation: operationToProto(record.incoming),
    appliedValueJson: jsonToText(record.appliedValue),
    incomingValueJson: jsonToText(record.incomingValue),
    resolvedValueJson: jsonToText(record.resolvedValue),
    createdAt: record.createdAt,
    resolvedAt: record.resolvedAt ?? 0,
    resolvedBy: record.resolvedBy ?? "",
  };
}

/** A proto Lock. */
export function lockToProto(record: LockRecord): pb.Lock {
  return {
    id: record.id,
    documentId: record.documentId,
    path: pathToProto(record.path),
    ownerId: record.ownerId,
    sessionId: record.sessionId,
    acquiredAt: record.acquiredAt,
    expiresAt: record.expiresAt,
    fencingToken: record.fencingToken,
  };
}

/** A proto Presence. */
export function presenceToProto(record: PresenceRecord): pb.Presence {
  return {
    userId: record.userId,
    sessionId: record.sessionId,
    stateJson: record.state === null ? "" : JSON.stringify(record.state),
    updatedAt: record.updatedAt,
    expiresAt: record.expiresAt,
  };
}

/** A proto DocumentEvent; the payload is the first of operation, document, conflict, lock, presence, reason. */
export function eventToProto(event: DocEvent): pb.DocumentEvent {
  let payload: pb.DocumentEvent["payload"];
  if (event.operation) payload = { $case: "operation", value: operationToProto(event.operation) };
  else if (event.document) payload = { $case: "document", value: documentToProto(event.document) };
  else if (event.conflict) payload = { $case: "conflict", value: conflictToProto(event.conflict) };
  else if (event.lock) payload = { $case: "lock", value: lockToProto(event.lock) };
  else if (event.presence) payload = { $case: "presence", value: presenceToProto(event.presence) };
  else if (event.reason !== undefined) payload = { $case: "reason", value: event.reason };
  return {
    type: EVENT_TYPES[event.type],
    documentId: event.documentId,
    version: event.version,
    timestamp: event.timestamp,
    userId: event.userId ?? "",
    payload,
  };
}

/** Proto form of each live event, converted once however many subscribers it goes to. */
const sharedEvents = new WeakMap<DocEvent, pb.DocumentEvent>();

/**
 * {@link eventToProto}, converted once per event object: every subscriber of a document gets
 * the same (read-only) message.
 */
export function sharedEventProto(event: DocEvent): pb.DocumentEvent {
  let proto = sharedEvents.get(event);
  if (proto === undefined) {
    proto = eventToProto(event);
    sharedEvents.set(event, proto);
  }
  return proto;
}
