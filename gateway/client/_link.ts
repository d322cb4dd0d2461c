/**
 * What a document handle needs from its client (internal).
 * @module
 */
import type { ServerMessage } from "./types.ts";

/** A failed request: the gateway's error message, or a local failure. */
export class RequestError extends Error {
  override name = "RequestError";
  /** gRPC-style status name ("UNAVAILABLE", "PERMISSION_DENIED", ...) or "DISCONNECTED". */
  readonly status: string;
  constructor(status: string, message: string) {
    super(message);
    this.status = status;
  }
}

/** Statuses after which the same request may succeed later. */
export const TRANSIENT = new Set([
  "DISCONNECTED",
  "TIMEOUT",
  "UNAVAILABLE",
  "DEADLINE_EXCEEDED",
  "RESOURCE_EXHAUSTED",
  "ABORTED",
  "INTERNAL",
]);

/** The client side a document talks through. */
export interface Link {
  /** Send a message with a fresh id; resolves with the reply/ack, rejects with RequestError. */
  request(message: Record<string, unknown>): Promise<ServerMessage>;
  /** True when authenticated on an open socket. */
  readonly online: boolean;
  /** Our session id (from the auth reply). */
  readonly sessionId: string | undefined;
  /** Delay before retrying a transiently failed op (jittered). */
  retryDelay(attempt: number): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** Document handle closed by the user. */
  forget(documentId: string): void;
}
