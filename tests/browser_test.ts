/**
 * Real-browser end-to-end tests: Debian's chromium driven by playwright-core against the
 * real stack (session, statesync and gateway as child processes, started the way
 * `deno task start` starts them, on free ports with a temp data dir). Two browser contexts
 * (two signed-in sessions) edit one document on the demo page at `/`.
 *
 * One stack and one browser are shared by the steps, in order: concurrent typing, one
 * context offline and back, gateway restart. A screenshot of the two-user state goes to
 * tests/artifacts/ (gitignored).
 */
import assert from "node:assert/strict";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { freePort, needs, tempDir } from "../kernel/testing.ts";
import { type Stack, startStack } from "../gateway/start.ts";
import {
  caretAt,
  CHROMIUM,
  editorState,
  launchChromium,
  openSignedIn,
  waitConverged,
  waitLive,
  waitStatus,
  waitText,
} from "./_browser.ts";

const tools = needs(CHROMIUM);

/** The part of a textarea read in the page. */
interface Caret {
  selectionEnd: number;
}
const ARTIFACTS = new URL("./artifacts/", import.meta.url);

/** The server's text of a document, read over REST with the page's own token. */
async function serverText(page: Page, documentId: string): Promise<string> {
  return await page.evaluate(async (id: string) => {
    // deno-lint-ignore no-explicit-any
    const s = (globalThis as any).aetherflow;
    const doc = await s.auth.request("GET", `/api/v1/documents/${id}`);
    return doc.content.text as string;
  }, documentId);
}

Deno.test({
  name: "browser: two users edit one document on the demo page through typing, offline and a " +
    "gateway restart" + tools.note,
  ignore: tools.ignore,
  // playwright-core keeps its pipe to the browser and fetch keeps pooled connections.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using dir = await tempDir("aetherflow-browser-");
    const stack: Stack = await startStack({
      dataDir: dir.path,
      gatewayPort: freePort(),
      sessionPort: freePort(),
      statesyncPort: freePort(),
      transport: "tcp",
      logs: Deno.env.get("E2E_LOGS") === "1",
    });
    let browser: Browser | undefined;
    try {
      browser = await launchChromium();
      const contextA: BrowserContext = await browser.newContext({
        viewport: { width: 1000, height: 760 },
      });
      // The second user is on a phone-sized screen.
      const contextB: BrowserContext = await browser.newContext({
        viewport: { width: 390, height: 844 },
      });
      const a = await openSignedIn(contextA, `${stack.gatewayUrl}/`);
      await a.fill("#new-name", "Shared notes");
      await a.click("#create-form button[type=submit]");
      await waitLive(a);
      const documentId = new URL(a.url()).hash.match(/doc=([0-9a-f-]+)/)?.[1];
      assert.ok(documentId, `document id in the URL: ${a.url()}`);
      const b = await openSignedIn(contextB, `${stack.gatewayUrl}/#doc=${documentId}`);
      await waitLive(b);
      await waitStatus(a, "online");
      await waitStatus(b, "online");

      await t.step("two contexts type concurrently in different places and converge", async () => {
        await caretAt(a, 0);
        await a.keyboard.type("Hello world", { delay: 5 });
        await waitText(b, ["Hello world"]);
        await caretAt(a, 0);
        await caretAt(b, -1);
        await Promise.all([
          a.keyboard.type("AAA ", { delay: 25 }),
          b.keyboard.type(" BBB", { delay: 25 }),
        ]);
        const text = await waitConverged([a, b]);
        assert.equal(text, "AAA Hello world BBB");
        assert.equal(await serverText(a, documentId), text);
        // Each sees the other's caret and name.
        await a.waitForSelector("#presence li[data-session]", { timeout: 30_000 });
        await b.waitForSelector("#presence li[data-session]", { timeout: 30_000 });
        // Each one's caret is drawn where it really is in the other's editor.
        const caretOf = (page: Page) =>
          page.$eval("#text", (t) => (t as unknown as Caret).selectionEnd);
        const [caretA, caretB] = [await caretOf(a), await caretOf(b)];
        assert.deepEqual([caretA, caretB], [4, text.length]);
        await a.waitForSelector(`.overlay .caret[data-at="${caretB}"]`, {
          state: "attached",
          timeout: 30_000,
        });
        await b.waitForSelector(`.overlay .caret[data-at="${caretA}"]`, {
          state: "attached",
          timeout: 30_000,
        });
        await b.waitForSelector("#history li", { timeout: 30_000 });
        await Deno.mkdir(ARTIFACTS, { recursive: true });
        await a.screenshot({ path: new URL("browser-two-users-a.png", ARTIFACTS).pathname });
        await b.screenshot({ path: new URL("browser-two-users-b.png", ARTIFACTS).pathname });
      });

      await t.step("the lock toggle makes the document read-only for the other user", async () => {
        await a.click("#lock");
        await a.waitForSelector('#lock[aria-pressed="true"]', { timeout: 30_000 });
        await b.waitForSelector("#text[readonly]", { timeout: 30_000 });
        assert.match(await b.textContent("#lock-note") ?? "", /Locked by/);
        await a.click("#lock");
        await a.waitForSelector('#lock[aria-pressed="false"]', { timeout: 30_000 });
        await b.waitForSelector("#text:not([readonly])", { timeout: 30_000 });
      });

      await t.step("one context goes offline, types, comes back: its edits arrive", async () => {
        await contextA.setOffline(true);
        await waitStatus(a, "offline");
        await caretAt(a, -1);
        await a.keyboard.type(" +offline", { delay: 5 });
        await caretAt(b, 0);
        await b.keyboard.type("online: ", { delay: 5 });
        await waitText(a, ["+offline"]);
        const offline = await editorState(a);
        assert.ok(offline.queued > 0, "queued ops are shown while offline");
        assert.match(await a.textContent("#status") ?? "", /offline · \d+ queued op/);
        await waitText(b, ["online: "]);
        assert.ok(!(await editorState(b)).text.includes("+offline"), "not sent while offline");
        await contextA.setOffline(false);
        await waitStatus(a, "online");
        const text = await waitConverged([a, b]);
        assert.equal(text, "online: AAA Hello world BBB +offline");
        assert.equal(await serverText(b, documentId), text);
      });

      await t.step(
        "the gateway restarts: both reconnect by themselves and keep editing",
        async () => {
          await stack.stop("gateway");
          await Promise.all([waitStatus(a, "reconnecting"), waitStatus(b, "reconnecting")]);
          await caretAt(b, -1);
          await b.keyboard.type(" [typed during restart]", { delay: 5 });
          await stack.start("gateway");
          await Promise.all([waitStatus(a, "online"), waitStatus(b, "online")]);
          await caretAt(a, 0);
          await caretAt(b, -1);
          await Promise.all([
            a.keyboard.type("after ", { delay: 20 }),
            b.keyboard.type(" END", { delay: 20 }),
          ]);
          const text = await waitConverged([a, b]);
          assert.equal(
            text,
            "after online: AAA Hello world BBB +offline [typed during restart] END",
          );
          assert.equal(await serverText(a, documentId), text);
        },
      );
      await contextA.close();
      await contextB.close();
    } finally {
      await browser?.close();
      await stack.shutdown();
    }
  },
});
