import assert from "node:assert/strict";
import { createLogger } from "./log.ts";

Deno.test("createLogger() writes one JSON line per record with bound fields", () => {
  const lines: string[] = [];
  const log = createLogger({ service: "gateway", level: "info", write: (l) => lines.push(l) })
    .with({ request_id: "r1", trace_id: "t1" });
  log.debug("Hidden");
  log.info("Request done", { status: 200 });
  assert.equal(lines.length, 1);
  const record = JSON.parse(lines[0]!);
  assert.equal(record.level, "info");
  assert.equal(record.service, "gateway");
  assert.equal(record.message, "Request done");
  assert.equal(record.request_id, "r1");
  assert.equal(record.trace_id, "t1");
  assert.equal(record.status, 200);
  assert.ok(!Number.isNaN(Date.parse(record.time)));
});

Deno.test("createLogger() never writes secrets under secret-looking keys", () => {
  const lines: string[] = [];
  const log = createLogger({ service: "s", write: (l) => lines.push(l) });
  log.warn("Login", {
    password: "hunter2",
    refresh_token: "abc",
    Authorization: "Bearer x",
    user: "u",
  });
  const text = lines.join("\n");
  for (const secret of ["hunter2", "abc", "Bearer x"]) assert.ok(!text.includes(secret), secret);
  assert.equal(JSON.parse(lines[0]!).user, "u");
});

Deno.test("createLogger() serialises errors by name and message", () => {
  const lines: string[] = [];
  createLogger({ service: "s", write: (l) => lines.push(l) }).error("Failed", {
    error: new RangeError("Out of range"),
  });
  assert.deepEqual(JSON.parse(lines[0]!).error, { name: "RangeError", message: "Out of range" });
});
