/**
 * A hand-written check of the hot WebSocket `op` message (the zod union costs several
 * microseconds per message, the largest JavaScript cost of the gateway under load).
 * {@link fastOpMessage} accepts only messages the zod schema accepts too, and returns them as
 * they are; anything it is not sure about returns `undefined`, so the caller falls back to
 * zod, which accepts or rejects it with its usual error reply.
 * @module
 */
import { isId } from "../kernel/mod.ts";
import type { ComponentJson } from "./_convert.ts";

/** An `op` message as the zod schema in ws_hub.ts outputs it. */
export interface OpMessage {
  type: "op";
  id?: string | number;
  document_id: string;
  base_version: number;
  client_op_id?: string;
  components: ComponentJson[];
}

type Check = (value: unknown) => boolean;

const isIndex: Check = (v) => Number.isSafeInteger(v) && (v as number) >= 0;
const isPositive: Check = (v) => Number.isSafeInteger(v) && (v as number) >= 1;
const isJson: Check = (v) => v !== undefined;
const isPath: Check = (v) => {
  if (!Array.isArray(v) || v.length > 64) return false;
  for (const element of v) if (typeof element !== "string" && !isIndex(element)) return false;
  return true;
};

/** Fields of each component type besides `type` (all required), as in ComponentSchema. */
const COMPONENT_FIELDS = new Map<unknown, Map<string, Check>>(
  Object.entries({
    set: { path: isPath, value: isJson },
    delete: { path: isPath },
    text_insert: { path: isPath, offset: isIndex, text: (v: unknown) => typeof v === "string" },
    text_delete: { path: isPath, offset: isIndex, length: isPositive },
    list_insert: { path: isPath, index: isIndex, value: isJson },
    list_delete: { path: isPath, index: isIndex },
    list_move: { path: isPath, from: isIndex, to: isIndex },
    increment: { path: isPath, delta: (v: unknown) => Number.isFinite(v) },
  }).map(([type, fields]) => [type, new Map(Object.entries(fields))]),
);

/** Only fields of `spec` besides `type`, each passing its check; `required` of them present. */
function fieldsPass(
  object: Record<string, unknown>,
  spec: Map<string, Check>,
  required: number,
): boolean {
  let count = 0;
  for (const key in object) {
    if (key === "type") continue;
    const check = spec.get(key);
    if (check === undefined || !check(object[key])) return false;
    count++;
  }
  return count >= required;
}

function isComponent(value: unknown): boolean {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const component = value as Record<string, unknown>;
  const spec = COMPONENT_FIELDS.get(component.type);
  return spec !== undefined && fieldsPass(component, spec, spec.size);
}

const OP_FIELDS = new Map<string, Check>([
  // String lengths: a string of at most N UTF-16 units has at most N characters too.
  ["id", (v) => (typeof v === "string" && v.length <= 64) || Number.isFinite(v)],
  ["document_id", isId],
  ["base_version", isIndex],
  ["client_op_id", (v) => typeof v === "string" && v.length >= 1 && v.length <= 128],
  [
    "components",
    (v) => Array.isArray(v) && v.length >= 1 && v.length <= 1000 && v.every(isComponent),
  ],
]);

/**
 * The parsed JSON `message` as a valid `op` message, or `undefined` when it is not one or
 * the fast check cannot tell (validate it with the zod schema then).
 */
export function fastOpMessage(message: unknown): OpMessage | undefined {
  if (typeof message !== "object" || message === null) return undefined;
  const m = message as Record<string, unknown>;
  if (m.type !== "op" || Array.isArray(m)) return undefined;
  if (m.document_id === undefined || m.base_version === undefined || m.components === undefined) {
    return undefined;
  }
  return fieldsPass(m, OP_FIELDS, 3) ? m as unknown as OpMessage : undefined;
}
