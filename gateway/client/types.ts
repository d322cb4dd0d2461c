/**
 * Types of the client library: the gateway's WebSocket messages (gateway/PROTOCOL.md) in
 * their JSON form, and the conversion between json0 components and the wire components.
 *
 * @example
 * ```ts
 * import { toWireComponents } from "./types.ts";
 * toWireComponents([{ path: ["text"], action: { type: "text_insert", offset: 0, text: "Hi" } }]);
 * // [{ type: "text_insert", path: ["text"], offset: 0, text: "Hi" }]
 * ```
 * @module
 */
import type { Component, Json, Op, Path } from "../../statesync/json0/mod.ts";

export type { Component, Json, Op, Path };

/** A component as the gateway's WebSocket and REST API carry it. */
export type WireComponent =
  | { type: "set"; path: Path; value: Json }
  | { type: "delete"; path: Path }
  | { type: "text_insert"; path: Path; offset: number; text: string }
  | { type: "text_delete"; path: Path; offset: number; length: number }
  | { type: "list_insert"; path: Path; index: number; value: Json }
  | { type: "list_delete"; path: Path; index: number }
  | { type: "list_move"; path: Path; from: number; to: number }
  | { type: "increment"; path: Path; delta: number };

/** An applied operation as the gateway reports it. */
export interface WireOperation {
  id: string;
  document_id: string;
  base_version: number;
  version: number;
  author_id: string;
  session_id: string;
  client_op_id: string;
  timestamp: number;
  components: WireComponent[];
}

/** A document as the gateway reports it. */
export interface DocumentInfo {
  id: string;
  name: string;
  type: string;
  state: string;
  owner_id: string;
  version: number;
  content: Json;
  conflict_strategy: string;
  created_at: number;
  updated_at: number;
  metadata: Record<string, string>;
}

/** A lock as the gateway reports it. */
export interface LockInfo {
  id: string;
  document_id: string;
  path: Path;
  owner_id: string;
  session_id: string;
  acquired_at: number;
  expires_at: number;
  fencing_token: number;
}

/** A presence record as the gateway reports it. */
export interface PresenceInfo {
  user_id: string;
  session_id: string;
  state: Json;
  updated_at: number;
  expires_at: number;
}

/** Any message the gateway sends (loosely typed: fields depend on `type` and `event`). */
export interface ServerMessage {
  type: "reply" | "ack" | "error" | "event" | "ping" | "pong" | "message";
  id?: string | number | null;
  // deno-lint-ignore no-explicit-any
  [key: string]: any;
}

/** Convert json0 components to the wire form. */
export function toWireComponents(op: Op): WireComponent[] {
  return op.map((c) => ({ ...c.action, path: c.path }) as WireComponent);
}

/**
 * Convert wire components to json0 components.
 * @throws {TypeError} for an unknown component type
 */
export function fromWireComponents(components: readonly WireComponent[]): Op {
  return components.map((c): Component => {
    switch (c.type) {
      case "set":
        return { path: c.path, action: { type: "set", value: c.value } };
      case "delete":
        return { path: c.path, action: { type: "delete" } };
      case "text_insert":
        return { path: c.path, action: { type: "text_insert", offset: c.offset, text: c.text } };
      case "text_delete":
        return {
          path: c.path,
          action: { type: "text_delete", offset: c.offset, length: c.length },
        };
      case "list_insert":
        return { path: c.path, action: { type: "list_insert", index: c.index, value: c.value } };
      case "list_delete":
        return { path: c.path, action: { type: "list_delete", index: c.index } };
      case "list_move":
        return { path: c.path, action: { type: "list_move", from: c.from, to: c.to } };
      case "increment":
        return { path: c.path, action: { type: "increment", delta: c.delta } };
      default:
        throw new TypeError(`Unknown component type ${(c as { type: unknown }).type}`);
    }
  });
}
