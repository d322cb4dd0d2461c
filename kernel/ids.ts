/**
 * UUIDv7 identifiers (RFC 9562): time-ordered, monotonic within a millisecond.
 *
 * @example
 * ```ts
 * const id = newId();
 * const bytes = idToBytes(id); // 16 bytes for the Quantum header
 * idFromBytes(bytes) === id; // true
 * ```
 * @module
 */
import { UUID, V7Generator } from "uuidv7";

const generator = new V7Generator();
const UUID_V7_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A new UUIDv7 string, strictly greater than every id this process made before. */
export function newId(): string {
  return generator.generate().toString();
}

/** A new UUIDv7 as 16 bytes. */
export function newIdBytes(): Uint8Array {
  return new Uint8Array(generator.generate().bytes);
}

/** True when `value` is a canonical lower-case UUIDv7 string (version 7, RFC 9562 variant). */
export function isId(value: unknown): value is string {
  return typeof value === "string" && UUID_V7_PATTERN.test(value);
}

/**
 * Validate and normalise a UUIDv7 string (upper case is accepted).
 * @throws {TypeError} when `value` is not a UUIDv7
 */
export function parseId(value: unknown, field = "id"): string {
  const lower = typeof value === "string" ? value.toLowerCase() : value;
  if (!isId(lower)) throw new TypeError(`Invalid ${field}: expected a UUIDv7`);
  return lower;
}

/** The 16-byte binary form of a UUIDv7 string. @throws {TypeError} when not a UUIDv7 */
export function idToBytes(id: string): Uint8Array {
  return new Uint8Array(UUID.parse(parseId(id)).bytes);
}

/** The string form of 16 UUIDv7 bytes. @throws {TypeError} when not 16 bytes of a UUIDv7 */
export function idFromBytes(bytes: Uint8Array): string {
  if (bytes.length !== 16) throw new TypeError("Invalid id bytes: expected 16 bytes");
  return parseId(UUID.ofInner(new Uint8Array(bytes)).toString());
}

/** The Unix epoch milliseconds encoded in a UUIDv7's first 48 bits. */
export function idTimestamp(id: string): number {
  const hex = parseId(id).replaceAll("-", "").slice(0, 12);
  return parseInt(hex, 16);
}
