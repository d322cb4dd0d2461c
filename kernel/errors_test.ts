import assert from "node:assert/strict";
import { AppError, okEnvelope, StatusCode } from "./errors.ts";

Deno.test("AppError maps gRPC statuses to HTTP statuses and the envelope", () => {
  const cases: [ConstructorParameters<typeof AppError>[0], number, number][] = [
    ["INVALID_ARGUMENT", 3, 400],
    ["UNAUTHENTICATED", 16, 401],
    ["PERMISSION_DENIED", 7, 403],
    ["NOT_FOUND", 5, 404],
    ["ALREADY_EXISTS", 6, 409],
    ["FAILED_PRECONDITION", 9, 412],
    ["RESOURCE_EXHAUSTED", 8, 429],
    ["INTERNAL", 13, 500],
    ["UNAVAILABLE", 14, 503],
    ["DEADLINE_EXCEEDED", 4, 504],
  ];
  for (const [status, code, http] of cases) {
    const error = new AppError(status, "Something failed", { details: { field: "x" } });
    assert.equal(error.code, code);
    assert.equal(error.httpStatus, http);
    assert.deepEqual(error.toEnvelope("r1"), {
      code,
      message: "Something failed",
      data: { field: "x" },
      request_id: "r1",
    });
  }
  assert.deepEqual(okEnvelope({ a: 1 }, "r2"), {
    code: 0,
    message: "OK",
    data: { a: 1 },
    request_id: "r2",
  });
});

Deno.test("AppError.from() turns caller mistakes into INVALID_ARGUMENT and hides internals", () => {
  assert.equal(AppError.from(new TypeError("Invalid id")).status, "INVALID_ARGUMENT");
  assert.equal(AppError.from(new RangeError("Too big")).message, "Too big");
  const internal = AppError.from(new Error("db password is hunter2"));
  assert.equal(internal.status, "INTERNAL");
  assert.equal(internal.message, "Internal error");
  assert.ok(internal.cause instanceof Error);
  const same = new AppError("NOT_FOUND", "Gone");
  assert.equal(AppError.from(same), same);
});

Deno.test("AppError.from() keeps a gRPC ServiceError's code and details", () => {
  const serviceError = Object.assign(new Error("5 NOT_FOUND: Session not found"), {
    code: StatusCode.NOT_FOUND,
    details: "Session not found",
  });
  const error = AppError.from(serviceError);
  assert.equal(error.status, "NOT_FOUND");
  assert.equal(error.message, "Session not found");
  assert.deepEqual(error.toServiceError(), {
    code: 5,
    details: "Session not found",
    message: "Session not found",
  });
  assert.equal(AppError.statusName(99), "UNKNOWN");
});
