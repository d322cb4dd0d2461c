import assert from "node:assert/strict";
import { apply, type Op, transform } from "../../statesync/json0/mod.ts";
import { OtState } from "./ot_state.ts";

const P = ["t"];
const ins = (offset: number, text: string): Op => [
  { path: P, action: { type: "text_insert", offset, text } },
];

function ids() {
  let n = 0;
  return () => `op-${++n}`;
}

Deno.test("OtState keeps one op in flight and composes typing runs behind it", () => {
  const s = new OtState({ version: 3, content: { t: "" }, newId: ids() });
  s.submit(ins(0, "a"));
  const first = s.takeSendable()!;
  assert.deepEqual(first, { op: ins(0, "a"), clientOpId: "op-1", baseVersion: 3 });
  s.submit(ins(1, "b"));
  s.submit(ins(2, "c"));
  assert.equal(s.takeSendable(), null, "nothing while an op is in flight");
  assert.deepEqual(s.pending, ins(1, "bc"));
  assert.equal(s.receive(4, ins(0, "a"), "op-1").kind, "ack");
  const second = s.takeSendable()!;
  assert.deepEqual(second, { op: ins(1, "bc"), clientOpId: "op-2", baseVersion: 4 });
  assert.deepEqual(s.content, { t: "abc" });
});

Deno.test("OtState.receive() transforms remote ops like the server does (applied op wins ties)", () => {
  const s = new OtState({ version: 0, content: { t: "xy" }, newId: ids() });
  s.submit(ins(1, "A"));
  const mine = s.takeSendable()!.op;
  const remote = ins(1, "B");
  const r = s.receive(1, remote, "someone-else");
  assert.equal(r.kind, "remote");
  // Server: remote applied first, mine transformed as the "right" side.
  const server = apply(apply({ t: "xy" }, remote), transform(mine, remote, "right"));
  assert.deepEqual(s.content, server);
  assert.deepEqual(s.inflight!.op, transform(mine, remote, "right"));
});

Deno.test("OtState under lww makes our not-yet-applied op win ties", () => {
  const s = new OtState({ version: 0, content: { t: "xy" }, strategy: "lww", newId: ids() });
  s.submit(ins(1, "A"));
  s.takeSendable();
  s.receive(1, ins(1, "B"), undefined);
  assert.deepEqual(s.content, { t: "xABy" });
});

Deno.test("OtState reports stale and missing versions instead of applying them", () => {
  const s = new OtState({ version: 5, content: { t: "" } });
  assert.deepEqual(s.receive(5, ins(0, "x"), undefined), { kind: "stale" });
  assert.deepEqual(s.receive(7, ins(0, "x"), undefined), { kind: "gap" });
  assert.deepEqual(s.content, { t: "" });
});

Deno.test("OtState.ack() completes the in-flight op only when no version is missing before it", () => {
  const s = new OtState({ version: 0, content: { t: "" }, newId: ids() });
  s.submit(ins(0, "a"));
  s.takeSendable();
  assert.equal(s.ack(2, "op-1"), false, "v1 (someone else's) has not arrived yet");
  assert.equal(s.ack(1, "other"), false);
  assert.equal(s.ack(1, "op-1"), true);
  assert.equal(s.version, 1);
  assert.equal(s.receive(1, ins(0, "a"), "op-1").kind, "stale", "its event comes later");
});

Deno.test("OtState.submit() leaves the state untouched when the op does not apply", () => {
  const s = new OtState({ version: 0, content: { t: "ab" } });
  assert.throws(() => s.submit(ins(9, "x")));
  assert.deepEqual(s.content, { t: "ab" });
  assert.equal(s.unacknowledged, 0);
});

Deno.test("OtState sends at most maxComponents per op and keeps the rest pending", () => {
  const s = new OtState({ version: 0, content: { a: 0 }, maxComponents: 2, newId: ids() });
  for (let i = 0; i < 5; i++) s.submit([{ path: ["a"], action: { type: "increment", delta: 1 } }]);
  assert.equal(s.takeSendable()!.op.length, 2);
  assert.equal(s.pending.length, 3);
});

Deno.test("OtState splits a huge paste into ops that fit the gateway's message limit", () => {
  const text = "x".repeat(70_000) + "ü€😀".repeat(20_000) + "y".repeat(1_000);
  const s = new OtState({ version: 0, content: { t: "ab" }, newId: ids() });
  s.submit(ins(1, text));
  let server: unknown = { t: "ab" };
  let sent = 0;
  for (let next = s.takeSendable(); next !== null; next = s.takeSendable()) {
    const wire = JSON.stringify({ type: "op", components: next.op });
    assert.ok(new TextEncoder().encode(wire).length < 65_536, `op ${sent}: ${wire.length}`);
    server = apply(server as { t: string }, next.op);
    assert.equal(s.receive(s.version + 1, next.op, next.clientOpId).kind, "ack");
    sent++;
  }
  assert.ok(sent > 5, `${sent} ops`);
  assert.deepEqual(server, { t: "a" + text + "b" });
  assert.deepEqual(s.content, server);
});
