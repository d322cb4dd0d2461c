/**
 * The demo page and the browser client, served by the gateway: `/` (and `/index.html`), the
 * page script `/app.js`, its stylesheet `/style.css` and the client library as an ES module
 * at `/client.js`. The files are imported as text (`--unstable-raw-imports`), so bundles and
 * binaries of the gateway carry them. The page links its assets with a content hash
 * (`/app.js?v=<hash>`): those URLs are cached for a year (immutable), everything else is
 * revalidated with its ETag on each use.
 *
 * Rebuild `demo/dist/*.js` with `deno task bundle:client` after changing the client or page.
 *
 * @example
 * ```ts
 * const response = serveDemo(new Request("http://localhost:8080/"));
 * response?.headers.get("content-type"); // "text/html; charset=utf-8"
 * ```
 * @module
 */
import indexHtml from "./demo/index.html" with { type: "text" };
import styleCss from "./demo/style.css" with { type: "text" };
import appJs from "./demo/dist/app.js" with { type: "text" };
import clientJs from "./demo/dist/client.js" with { type: "text" };

/** One servable file. */
export interface StaticAsset {
  body: Uint8Array<ArrayBuffer>;
  contentType: string;
  /** Strong ETag (quoted content hash). */
  etag: string;
  /** Content hash used in versioned URLs (`?v=`). */
  hash: string;
}

const encoder = new TextEncoder();

/** FNV-1a over the UTF-16 code units, two 32-bit lanes: enough to tell versions apart. */
function contentHash(text: string): string {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193) >>> 0;
    b = Math.imul(b ^ c, 0x5bd1e995) >>> 0;
  }
  return a.toString(16).padStart(8, "0") + b.toString(16).padStart(8, "0");
}

function asset(text: string, contentType: string): StaticAsset {
  const hash = contentHash(text);
  return { body: encoder.encode(text), contentType, etag: `"${hash}"`, hash };
}

function build(): Map<string, StaticAsset> {
  const assets = new Map<string, StaticAsset>([
    ["/app.js", asset(appJs, "text/javascript; charset=utf-8")],
    ["/client.js", asset(clientJs, "text/javascript; charset=utf-8")],
    ["/style.css", asset(styleCss, "text/css; charset=utf-8")],
  ]);
  // Link the page's assets by content hash, so browsers never run a stale script.
  let html = indexHtml;
  for (const path of ["/app.js", "/style.css"]) {
    html = html.replaceAll(`"${path}"`, `"${path}?v=${assets.get(path)!.hash}"`);
  }
  const page = asset(html, "text/html; charset=utf-8");
  assets.set("/", page);
  assets.set("/index.html", page);
  return assets;
}

const ASSETS = build();

/** Content Security Policy of the page: own scripts and styles, WebSockets to the gateway. */
export const DEMO_CSP = [
  "default-src 'self'",
  "connect-src 'self' ws: wss:",
  "img-src 'self' data:",
  "style-src 'self'",
  "script-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

/** Paths served by {@linkcode serveDemo}. */
export function demoPaths(): string[] {
  return [...ASSETS.keys()];
}

/**
 * Answer a GET or HEAD for the demo page or one of its assets; `undefined` for any other
 * request (so the caller routes it as usual).
 */
export function serveDemo(req: Request): Response | undefined {
  if (req.method !== "GET" && req.method !== "HEAD") return undefined;
  const url = new URL(req.url);
  const found = ASSETS.get(url.pathname);
  if (found === undefined) return undefined;
  const headers = new Headers({
    "content-type": found.contentType,
    "etag": found.etag,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
  });
  const versioned = url.searchParams.get("v") === found.hash;
  headers.set("cache-control", versioned ? "public, max-age=31536000, immutable" : "no-cache");
  if (found.contentType.startsWith("text/html")) {
    headers.set("content-security-policy", DEMO_CSP);
    headers.set("x-frame-options", "DENY");
  }
  if (matchesEtag(req.headers.get("if-none-match"), found.etag)) {
    return new Response(null, { status: 304, headers });
  }
  headers.set("content-length", String(found.body.byteLength));
  return new Response(req.method === "HEAD" ? null : found.body, { status: 200, headers });
}

function matchesEtag(header: string | null, etag: string): boolean {
  if (header === null) return false;
  return header.split(",").some((tag) => {
    const t = tag.trim();
    return t === "*" || t === etag || t === `W/${etag}`;
  });
}
