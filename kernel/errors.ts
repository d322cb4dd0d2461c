/**
 * One error model for every service: a domain error carrying a gRPC status code,
 * mapped to an HTTP status and the response envelope `{code, message, data, request_id}`.
 *
 * @example
 * ```ts
 * throw new AppError("NOT_FOUND", "Session not found");
 * // at a boundary:
 * const err = AppError.from(caught); // never leaks internals for unknown errors
 * ```
 * @module
 */

/** gRPC status codes by name (google.rpc.Code numbering). */
export const StatusCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** A gRPC status code name, e.g. `"NOT_FOUND"`. */
export type StatusName = keyof typeof StatusCode;

const STATUS_NAMES = Object.fromEntries(
  Object.entries(StatusCode).map(([name, code]) => [code, name]),
) as Record<number, StatusName>;

/** HTTP status for each gRPC status (as grpc-gateway maps them). */
const HTTP_STATUS: Record<StatusName, number> = {
  OK: 200,
  CANCELLED: 499,
  UNKNOWN: 500,
  INVALID_ARGUMENT: 400,
  DEADLINE_EXCEEDED: 504,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  PERMISSION_DENIED: 403,
  RESOURCE_EXHAUSTED: 429,
  FAILED_PRECONDITION: 412,
  ABORTED: 409,
  OUT_OF_RANGE: 400,
  UNIMPLEMENTED: 501,
  INTERNAL: 500,
  UNAVAILABLE: 503,
  DATA_LOSS: 500,
  UNAUTHENTICATED: 401,
};

/** The JSON body of every gateway response. */
export interface Envelope<T = unknown> {
  /** 0 on success, else the gRPC status code. */
  code: number;
  /** "OK" or a sentence saying what went wrong. */
  message: string;
  /** The result, or error details, or null. */
  data: T | null;
  /** The request id echoed in `X-Request-ID`. */
  request_id: string;
}

/** A failure callers are expected to branch on; carries a gRPC status. */
export class AppError extends Error {
  override name = "AppError";
  /** The gRPC status name. */
  readonly status: StatusName;
  /** Optional machine-readable details for the envelope's `data`. */
  readonly details: unknown;

  constructor(
    status: StatusName,
    message: string,
    options?: { cause?: unknown; details?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.status = status;
    this.details = options?.details ?? null;
  }

  /** The numeric gRPC status code. */
  get code(): number {
    return StatusCode[this.status];
  }

  /** The HTTP status the gateway answers with. */
  get httpStatus(): number {
    return HTTP_STATUS[this.status];
  }

  /**
   * Convert anything thrown into an AppError. Caller mistakes (`TypeError`, `RangeError`,
   * `SyntaxError`) become INVALID_ARGUMENT; gRPC `ServiceError`s keep their code and
   * details; anything else becomes INTERNAL with a generic message (the cause is kept for logs).
   */
  static from(error: unknown): AppError {
    if (error instanceof AppError) return error;
    if (error instanceof TypeError || error instanceof RangeError || error instanceof SyntaxError) {
      return new AppError("INVALID_ARGUMENT", error.message, { cause: error });
    }
    if (isServiceError(error)) {
      const status = STATUS_NAMES[error.code] ?? "UNKNOWN";
      return new AppError(status, error.details || error.message, { cause: error });
    }
    return new AppError("INTERNAL", "Internal error", { cause: error });
  }

  /** The status name for a numeric gRPC code ("UNKNOWN" when out of range). */
  static statusName(code: number): StatusName {
    return STATUS_NAMES[code] ?? "UNKNOWN";
  }

  /** This error as a response envelope. */
  toEnvelope(requestId: string): Envelope {
    return {
      code: this.code,
      message: this.message,
      data: this.details ?? null,
      request_id: requestId,
    };
  }

  /** This error in the shape `@grpc/grpc-js` callbacks expect. */
  toServiceError(): { code: number; details: string; message: string } {
    return { code: this.code, details: this.message, message: this.message };
  }
}

/** A success envelope. */
export function okEnvelope<T>(data: T, requestId: string): Envelope<T> {
  return { code: 0, message: "OK", data, request_id: requestId };
}

function isServiceError(
  error: unknown,
): error is { code: number; details: string; message: string } {
  return typeof error === "object" && error !== null && "code" in error &&
    typeof (error as { code: unknown }).code === "number" && "details" in error;
}
