import assert from "node:assert/strict";
import { CallGate } from "./call_gate.ts";

Deno.test("CallGate refuses calls once closed and reports idle when the last one leaves", async () => {
  const gate = new CallGate();
  assert.equal(await gate.whenIdle(1000), true);
  assert.ok(gate.enter());
  assert.ok(gate.enter());
  gate.close();
  assert.equal(gate.enter(), false);
  const idle = gate.whenIdle(60_000);
  gate.leave();
  assert.equal(gate.inFlight, 1);
  gate.leave();
  assert.equal(await idle, true);
});

Deno.test("CallGate.whenIdle gives up after its timeout", async () => {
  const gate = new CallGate();
  gate.enter();
  assert.equal(await gate.whenIdle(1), false);
  gate.leave();
});
