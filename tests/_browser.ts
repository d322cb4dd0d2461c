/**
 * Helpers for the real-browser tests: launch Debian's chromium through playwright-core
 * (never a downloaded browser), open the demo page, sign in, and read the editor's state.
 * @module
 */
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";

/** The system browser the tests drive (installed by .ci/run with apt-get). */
export const CHROMIUM = "/usr/bin/chromium";

/** Flags that work on these machines (see REFERENCES.md, platform notes). */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * What the page functions below touch, typed without `lib.dom` (which would apply to the
 * whole repository's type check). They run inside the browser.
 */
interface PageGlobals {
  document: {
    getElementById(id: string): {
      value: string;
      dataset: Record<string, string | undefined>;
      focus(): void;
      setSelectionRange(start: number, end: number): void;
    } | null;
  };
  // deno-lint-ignore no-explicit-any
  aetherflow?: any;
}

/** Upper bound for any single wait in the browser tests. */
export const WAIT_MS = 30_000;

/**
 * Launch chromium. Playwright gives each launch a fresh temporary profile
 * (`--user-data-dir` in the OS temp dir, removed on close).
 */
export async function launchChromium(): Promise<Browser> {
  return await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: WAIT_MS,
  });
}

/** Page state the tests read (set by gateway/demo/app.ts on `globalThis.aetherflow`). */
export interface EditorState {
  text: string;
  docText: string | null;
  version: number;
  status: string;
  queued: number;
  live: boolean;
}

/** Open the demo at `url` in a new page of `context` and sign in as the prefilled dev user. */
export async function openSignedIn(context: BrowserContext, url: string): Promise<Page> {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(String(error)));
  await page.goto(url, { timeout: WAIT_MS });
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#app:not([hidden])", { timeout: WAIT_MS });
  if (problems.length > 0) throw new Error(`Page errors: ${problems.join("; ")}`);
  return page;
}

/** The editor's state in `page`. */
export async function editorState(page: Page): Promise<EditorState> {
  return await page.evaluate(() => {
    const g = globalThis as unknown as PageGlobals;
    const s = g.aetherflow;
    const textarea = g.document.getElementById("text")!;
    const status = g.document.getElementById("status")!;
    return {
      text: textarea.value,
      docText: s?.doc?.content?.text ?? null,
      version: s?.doc?.version ?? -1,
      status: status.dataset.status ?? "",
      queued: Number(status.dataset.queued ?? 0),
      live: s?.doc?.live === true,
    };
  });
}

/** Wait until the page's document is subscribed and caught up. */
export async function waitLive(page: Page): Promise<void> {
  await page.waitForFunction(
    // deno-lint-ignore no-explicit-any
    () => (globalThis as any).aetherflow?.doc?.live === true,
    null,
    { timeout: WAIT_MS },
  );
}

/** Wait until the status indicator shows `status`. */
export async function waitStatus(page: Page, status: string): Promise<void> {
  await page.waitForSelector(`#status[data-status="${status}"]`, { timeout: WAIT_MS });
}

/** Wait until the textarea's text satisfies `includes` (every string appears in it). */
export async function waitText(page: Page, includes: string[]): Promise<void> {
  await page.waitForFunction(
    (parts: string[]) => {
      const g = globalThis as unknown as PageGlobals;
      const value = g.document.getElementById("text")!.value;
      return parts.every((p) => value.includes(p));
    },
    includes,
    { timeout: WAIT_MS },
  );
}

/** Put the caret of the page's textarea at `index` (-1: the end) and focus it. */
export async function caretAt(page: Page, index: number): Promise<void> {
  await page.evaluate((at: number) => {
    const g = globalThis as unknown as PageGlobals;
    const textarea = g.document.getElementById("text")!;
    textarea.focus();
    const i = at < 0 ? textarea.value.length : at;
    textarea.setSelectionRange(i, i);
  }, index);
}

/**
 * Wait until every page shows the same text with nothing queued, at the same version, and
 * return that text.
 */
export async function waitConverged(pages: Page[]): Promise<string> {
  const deadline = Date.now() + WAIT_MS;
  for (const page of pages) {
    await page.waitForFunction(
      () => {
        const g = globalThis as unknown as PageGlobals;
        const s = g.aetherflow;
        const textarea = g.document.getElementById("text")!;
        return s?.doc?.live === true && s.doc.queued === 0 && s.client?.status === "online" &&
          s.doc.content?.text === textarea.value;
      },
      null,
      { timeout: Math.max(1, deadline - Date.now()) },
    );
  }
  // Everyone is idle; versions must agree once the last events are in.
  const versions = await Promise.all(pages.map((p) => editorState(p).then((s) => s.version)));
  const top = Math.max(...versions);
  for (const page of pages) {
    await page.waitForFunction(
      // deno-lint-ignore no-explicit-any
      (v: number) => (globalThis as any).aetherflow?.doc?.version >= v,
      top,
      { timeout: Math.max(1, deadline - Date.now()) },
    );
  }
  const states = await Promise.all(pages.map(editorState));
  const texts = new Set(states.map((s) => s.text));
  if (texts.size !== 1) {
    throw new Error(`Pages diverged: ${JSON.stringify(states.map((s) => s.text))}`);
  }
  return states[0]!.text;
}
