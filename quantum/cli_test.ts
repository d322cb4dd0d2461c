/** The `quantum` CLI sends a file from one process to another over real UDP. */
import assert from "node:assert/strict";
import { randomBytes, sha256 } from "./_test_util.ts";
import { createHash } from "node:crypto";

const cli = new URL("./cli.ts", import.meta.url).pathname;

Deno.test("quantum listen | quantum send moves 2 MiB between two processes byte-exact", async () => {
  const data = randomBytes(2 << 20, 99);
  const receiver = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", cli, "listen", "--host", "127.0.0.1", "--port", "0"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderrLines = receiver.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let banner = "";
  while (!banner.includes("\n")) {
    const { value, done } = await stderrLines.read();
    if (done) break;
    banner += value;
  }
  const port = Number(/listening on [\d.]+:(\d+)/.exec(banner)?.[1]);
  assert.ok(port > 0, banner);
  const hashing = (async () => {
    const hash = createHash("sha256");
    let length = 0;
    for await (const chunk of receiver.stdout) {
      hash.update(chunk);
      length += chunk.length;
    }
    return { sha256: hash.digest("hex"), length };
  })();
  const sender = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", cli, "send", `127.0.0.1:${port}`],
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const writer = sender.stdin.getWriter();
  await writer.write(data);
  await writer.close();
  const sent = await sender.output();
  const senderLog = new TextDecoder().decode(sent.stderr);
  assert.equal(sent.code, 0, senderLog);
  assert.match(senderLog, /sent 2097152 bytes .* close: closed/);
  const received = await hashing;
  let rest = "";
  while (true) {
    const { value, done } = await stderrLines.read();
    if (done) break;
    rest += value;
  }
  assert.equal((await receiver.status).code, 0);
  assert.match(rest, /received 2097152 bytes/);
  assert.equal(received.length, data.length);
  assert.equal(received.sha256, sha256(data));
});
