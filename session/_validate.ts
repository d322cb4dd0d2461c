/**
 * Input checks shared by the manager. Each throws TypeError/RangeError whose message names the
 * field as it is spelled in proto/session.proto, so the gRPC layer can pass it on as
 * INVALID_ARGUMENT.
 * @module
 */
import { isIP } from "node:net";
import { parseId } from "../kernel/mod.ts";
import type { SessionStats } from "./model.ts";

const encoder = new TextEncoder();

/** Limits on session metadata. */
export interface MetadataLimits {
  /** Maximum number of entries. */
  maxEntries: number;
  /** Maximum UTF-8 bytes of one key. */
  maxKeyBytes: number;
  /** Maximum UTF-8 bytes of one value. */
  maxValueBytes: number;
  /** Maximum UTF-8 bytes of all keys and values together. */
  maxTotalBytes: number;
}

/** A UUIDv7 field (normalised to lower case). */
export function requireId(value: unknown, field: string): string {
  if (value === undefined || value === null || value === "") {
    throw new TypeError(`Missing ${field}`);
  }
  return parseId(value, field);
}

/** "" or a UUIDv7. */
export function optionalId(value: unknown, field: string): string {
  if (value === undefined || value === null || value === "") return "";
  return parseId(value, field);
}

/** A non-empty string of at most `maxLength` characters without control characters. */
export function requireText(value: unknown, field: string, maxLength: number): string {
  if (value === undefined || value === null || value === "") {
    throw new TypeError(`Missing ${field}`);
  }
  return optionalText(value, field, maxLength);
}

/** "" or a string of at most `maxLength` characters without control characters. */
export function optionalText(value: unknown, field: string, maxLength: number): string {
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") throw new TypeError(`Invalid ${field}: expected a string`);
  if (value.length > maxLength) {
    throw new RangeError(`Invalid ${field}: longer than ${maxLength} characters`);
  }
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) {
    throw new TypeError(`Invalid ${field}: contains control characters`);
  }
  return value;
}

/** "" or an IPv4/IPv6 address. */
export function optionalIp(value: unknown, field: string): string {
  const text = optionalText(value, field, 64);
  if (text !== "" && isIP(text) === 0) throw new TypeError(`Invalid ${field}: not an IP address`);
  return text;
}

/** An integer in [min, max]. */
export function integerIn(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TypeError(`Invalid ${field}: expected an integer`);
  }
  if (value < min || value > max) {
    throw new RangeError(`Invalid ${field}: must be between ${min} and ${max}`);
  }
  return value;
}

/** A copy of `metadata` after checking it against `limits`. */
export function validMetadata(
  value: unknown,
  field: string,
  limits: MetadataLimits,
): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new TypeError(`Invalid ${field}: expected a map of strings`);
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > limits.maxEntries) {
    throw new RangeError(`Invalid ${field}: more than ${limits.maxEntries} entries`);
  }
  let total = 0;
  const out: Record<string, string> = {};
  for (const [key, entry] of entries) {
    if (typeof entry !== "string") {
      throw new TypeError(`Invalid ${field}: value of "${key}" is not a string`);
    }
    const keyBytes = encoder.encode(key).length;
    const valueBytes = encoder.encode(entry).length;
    if (keyBytes === 0) throw new TypeError(`Invalid ${field}: empty key`);
    if (keyBytes > limits.maxKeyBytes) {
      throw new RangeError(`Invalid ${field}: key longer than ${limits.maxKeyBytes} bytes`);
    }
    if (valueBytes > limits.maxValueBytes) {
      throw new RangeError(
        `Invalid ${field}: value of "${
          key.slice(0, 64)
        }" longer than ${limits.maxValueBytes} bytes`,
      );
    }
    total += keyBytes + valueBytes;
    out[key] = entry;
  }
  if (total > limits.maxTotalBytes) {
    throw new RangeError(`Invalid ${field}: larger than ${limits.maxTotalBytes} bytes in total`);
  }
  return out;
}

/** Counters: non-negative safe integers. */
export function validStats(value: unknown, field: string): SessionStats {
  if (typeof value !== "object" || value === null) {
    throw new TypeError(`Invalid ${field}: expected counters`);
  }
  const source = value as Record<string, unknown>;
  const read = (name: keyof SessionStats, protoName: string) =>
    integerIn(source[name] ?? 0, `${field}.${protoName}`, 0, Number.MAX_SAFE_INTEGER);
  return {
    messagesIn: read("messagesIn", "messages_in"),
    messagesOut: read("messagesOut", "messages_out"),
    bytesIn: read("bytesIn", "bytes_in"),
    bytesOut: read("bytesOut", "bytes_out"),
    operations: read("operations", "operations"),
  };
}
