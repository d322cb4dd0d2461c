import assert from "node:assert/strict";
import { tempDir } from "../kernel/testing.ts";
import { DEMO_CSP, demoPaths, serveDemo } from "./static.ts";

const ROOT = new URL("..", import.meta.url);

Deno.test("serveDemo() serves the page and its assets with content types and caching headers", async () => {
  const page = serveDemo(new Request("http://gw/"))!;
  assert.equal(page.status, 200);
  assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
  assert.equal(page.headers.get("cache-control"), "no-cache");
  assert.equal(page.headers.get("content-security-policy"), DEMO_CSP);
  assert.equal(page.headers.get("x-content-type-options"), "nosniff");
  const html = await page.text();
  const script = html.match(/src="(\/app\.js\?v=[0-9a-f]{16})"/)?.[1];
  const style = html.match(/href="(\/style\.css\?v=[0-9a-f]{16})"/)?.[1];
  assert.ok(script && style, "assets linked by content hash");
  const js = serveDemo(new Request(`http://gw${script}`))!;
  assert.equal(js.headers.get("content-type"), "text/javascript; charset=utf-8");
  assert.equal(js.headers.get("cache-control"), "public, max-age=31536000, immutable");
  assert.match(await js.text(), /AetherFlowClient/);
  const css = serveDemo(new Request(`http://gw${style}`))!;
  assert.equal(css.headers.get("content-type"), "text/css; charset=utf-8");
  await css.body?.cancel();
  const unversioned = serveDemo(new Request("http://gw/client.js"))!;
  assert.equal(unversioned.headers.get("cache-control"), "no-cache", "no hash: revalidate");
  assert.match(await unversioned.text(), /export\s*\{[^}]*AetherFlowClient/);
  const stale = serveDemo(new Request("http://gw/app.js?v=0000000000000000"))!;
  assert.equal(stale.headers.get("cache-control"), "no-cache");
  await stale.body?.cancel();
});

Deno.test("serveDemo() answers If-None-Match with 304 and HEAD without a body", async () => {
  const first = serveDemo(new Request("http://gw/style.css"))!;
  const etag = first.headers.get("etag")!;
  assert.match(etag, /^"[0-9a-f]{16}"$/);
  await first.body?.cancel();
  const again = serveDemo(
    new Request("http://gw/style.css", { headers: { "if-none-match": etag } }),
  )!;
  assert.equal(again.status, 304);
  assert.equal(again.body, null);
  const head = serveDemo(new Request("http://gw/", { method: "HEAD" }))!;
  assert.equal(head.status, 200);
  assert.equal(head.body, null);
  assert.ok(Number(head.headers.get("content-length")) > 500);
});

Deno.test("serveDemo() leaves other paths and methods to the router", () => {
  assert.equal(serveDemo(new Request("http://gw/api/v1/documents")), undefined);
  assert.equal(serveDemo(new Request("http://gw/../deno.json")), undefined);
  assert.equal(serveDemo(new Request("http://gw/", { method: "POST" })), undefined);
  assert.deepEqual(demoPaths().sort(), ["/", "/app.js", "/client.js", "/index.html", "/style.css"]);
});

Deno.test("the committed browser bundles are up to date with the client and page sources", async () => {
  await using dir = await tempDir();
  for (
    const [entry, out] of [["gateway/client/mod.ts", "client.js"], [
      "gateway/demo/app.ts",
      "app.js",
    ]]
  ) {
    const built = `${dir.path}/${out}`;
    const result = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", "--platform", "browser", "-o", built, entry!],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(result.code, 0, new TextDecoder().decode(result.stderr));
    const fresh = await Deno.readTextFile(built);
    const committed = await Deno.readTextFile(new URL(`gateway/demo/dist/${out}`, ROOT));
    assert.ok(
      fresh === committed,
      `gateway/demo/dist/${out} is stale: run \`deno task bundle:client\` and commit it`,
    );
  }
});
