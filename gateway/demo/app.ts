/**
 * The collaborative demo page served by the gateway at `/` (bundled into `dist/app.js` by
 * `deno task bundle:client`): sign in, list and create documents, edit a shared text with
 * caret-preserving remote updates, see others' cursors and presence, lock the document,
 * watch the connection state and the recent history.
 * @module
 */
import {
  AetherFlowClient,
  type ConnectionStatus,
  type DocHandle,
  type DocumentInfo,
  type Op,
  type PresenceInfo,
  RestAuth,
  type Selection,
  type ServerMessage,
  textEditOp,
  transformSelection,
  type WireOperation,
} from "../client/mod.ts";
import {
  browser,
  type DomButton,
  type DomElement,
  type DomForm,
  type DomInput,
  type DomNode,
  type DomTextArea,
} from "./_dom.ts";

const { document, location } = browser;

const TEXT_PATH = ["text"];
const COLORS = ["#e8590c", "#2f9e44", "#1971c2", "#9c36b5", "#c2255c", "#0c8599", "#5c940d"];
const HISTORY_LIMIT = 30;
const LOCK_TTL_MS = 120_000;

function el<T extends DomElement = DomElement>(id: string): T {
  const found = document.getElementById(id);
  if (found === null) throw new Error(`Missing element #${id}`);
  return found as T;
}

const ui = {
  status: el("status"),
  whoami: el("whoami"),
  logout: el<DomButton>("logout"),
  login: el("login"),
  loginForm: el<DomForm>("login-form"),
  username: el<DomInput>("username"),
  password: el<DomInput>("password"),
  loginError: el("login-error"),
  app: el("app"),
  createForm: el<DomForm>("create-form"),
  newName: el<DomInput>("new-name"),
  docList: el("doc-list"),
  refreshDocs: el<DomButton>("refresh-docs"),
  empty: el("empty"),
  editor: el("editor"),
  docName: el("doc-name"),
  version: el("version"),
  lock: el<DomButton>("lock"),
  lockNote: el("lock-note"),
  overlay: el("overlay"),
  text: el<DomTextArea>("text"),
  presence: el("presence"),
  history: el("history"),
  docError: el("doc-error"),
};

interface State {
  auth: RestAuth;
  client: AetherFlowClient | undefined;
  doc: DocHandle | undefined;
  offs: Array<() => void>;
  /** The text the textarea showed after the last sync (diffed against on input). */
  shadow: string;
  composing: boolean;
  myLockId: string | undefined;
  lockTimer: ReturnType<typeof setInterval> | undefined;
  history: string[];
}

const state: State = {
  auth: new RestAuth(location.origin),
  client: undefined,
  doc: undefined,
  offs: [],
  shadow: "",
  composing: false,
  myLockId: undefined,
  lockTimer: undefined,
  history: [],
};

// Exposed for debugging in the console and for the end-to-end tests.
(globalThis as unknown as { aetherflow: State }).aetherflow = state;

// ---- sign in ----

const params = new URLSearchParams(location.search);
/** The dev login `deno task start` creates; only offered when the page runs locally. */
const LOCAL = ["localhost", "127.0.0.1", "[::1]"].includes(location.hostname);
ui.username.value = params.get("user") ?? (LOCAL ? "dev" : "");
ui.password.value = params.get("password") ?? (LOCAL ? "dev-password" : "");

ui.loginForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  ui.loginError.textContent = "";
  try {
    const user = await state.auth.login(ui.username.value.trim(), ui.password.value);
    ui.whoami.textContent = user.username;
    startClient();
  } catch (error) {
    ui.loginError.textContent = (error as Error).message;
  }
});

ui.logout.addEventListener("click", async () => {
  await closeDoc();
  await state.client?.close();
  state.client = undefined;
  await state.auth.logout().catch(() => {});
  ui.app.hidden = true;
  ui.logout.hidden = true;
  ui.login.hidden = false;
  ui.whoami.textContent = "";
  renderStatus("idle");
});

function startClient(): void {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const client = new AetherFlowClient({ url: `${scheme}//${location.host}/ws`, auth: state.auth });
  state.client = client;
  client.events.on("status", ({ status, delayMs }) => renderStatus(status, delayMs));
  client.events.on("error", ({ error }) => console.warn("aetherflow:", error.message));
  client.connect();
  ui.login.hidden = true;
  ui.app.hidden = false;
  ui.logout.hidden = false;
  void loadDocuments().then(() => {
    const fromHash = new URLSearchParams(location.hash.slice(1)).get("doc");
    if (fromHash) void openDoc(fromHash);
  });
}

// ---- connection indicator ----

function renderStatus(status: ConnectionStatus, delayMs?: number): void {
  const queued = state.client?.queued ?? 0;
  const pending = queued > 0 ? ` · ${queued} queued op${queued === 1 ? "" : "s"}` : "";
  const label: Record<ConnectionStatus, string> = {
    idle: "not connected",
    connecting: "connecting…",
    online: "online",
    reconnecting: delayMs ? `reconnecting in ${(delayMs / 1000).toFixed(1)} s` : "reconnecting…",
    offline: "offline",
    closed: "disconnected",
  };
  ui.status.dataset.status = status;
  ui.status.dataset.queued = String(queued);
  ui.status.textContent = label[status] + pending;
}

// ---- documents ----

async function loadDocuments(): Promise<void> {
  try {
    const data = await state.auth.request<{ documents: DocumentInfo[] }>(
      "GET",
      "/api/v1/documents?type=text&state=active",
    );
    ui.docList.replaceChildren(...data.documents.map((doc) => {
      const li = document.createElement("li");
      const button = document.createElement("button") as DomButton;
      button.type = "button";
      button.textContent = doc.name;
      button.dataset.id = doc.id;
      button.setAttribute("aria-current", String(doc.id === state.doc?.id));
      button.addEventListener("click", () => void openDoc(doc.id));
      li.append(button);
      return li;
    }));
    if (data.documents.length === 0) {
      const li = document.createElement("li");
      li.className = "hint";
      li.textContent = "No documents yet.";
      ui.docList.append(li);
    }
  } catch (error) {
    ui.docError.textContent = `Cannot list documents: ${(error as Error).message}`;
  }
}

ui.refreshDocs.addEventListener("click", () => void loadDocuments());

ui.createForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = ui.newName.value.trim();
  if (name === "") return;
  try {
    const doc = await state.auth.request<DocumentInfo>("POST", "/api/v1/documents", {
      name,
      type: "text",
      content: { text: "" },
    });
    ui.newName.value = "";
    await loadDocuments();
    await openDoc(doc.id);
  } catch (error) {
    ui.docError.textContent = `Cannot create: ${(error as Error).message}`;
  }
});

async function closeDoc(): Promise<void> {
  for (const off of state.offs) off();
  state.offs = [];
  clearInterval(state.lockTimer);
  state.lockTimer = undefined;
  state.myLockId = undefined;
  const doc = state.doc;
  state.doc = undefined;
  await doc?.close();
}

async function openDoc(id: string): Promise<void> {
  const client = state.client;
  if (client === undefined || state.doc?.id === id) return;
  await closeDoc();
  ui.docError.textContent = "";
  let doc: DocHandle;
  try {
    doc = await client.open(id);
  } catch (error) {
    ui.docError.textContent = `Cannot open: ${(error as Error).message}`;
    return;
  }
  state.doc = doc;
  browser.history.replaceState(null, "", `#doc=${id}`);
  for (const button of ui.docList.querySelectorAll("button[data-id]")) {
    button.setAttribute("aria-current", String(button.dataset.id === id));
  }
  ui.empty.hidden = true;
  ui.editor.hidden = false;
  ui.docName.textContent = doc.info?.name ?? id;
  const content = doc.content;
  const isObject = typeof content === "object" && content !== null && !Array.isArray(content);
  if (isObject && typeof (content as { text?: unknown }).text !== "string") {
    // An object without a text field yet: give it one so it can be edited here.
    doc.submit([{ path: TEXT_PATH, action: { type: "set", value: "" } }]);
  } else if (!isObject) {
    ui.docError.textContent = "This document's content is not an object with a text field: " +
      "it is shown read-only.";
  }
  state.shadow = textOf(doc);
  ui.text.value = state.shadow;
  state.history = [];
  carets.clear();
  opLog.length = 0;
  renderVersion();
  renderPresence();
  renderLocks();
  state.offs.push(
    doc.events.on("change", ({ op, source, author, version }) => {
      if (source === "remote") applyRemote(op, author, version);
      else moveCarets(op, undefined, undefined);
      renderVersion();
    }),
    doc.events.on("ack", ({ op, version }) => {
      // Our own ops are in the log too: a caret reported at an older version must move
      // past them as well.
      logOp(op, state.client?.sessionId, version);
      renderVersion();
      if (doc.queued === 0 && presenceDue) sendPresence();
    }),
    doc.events.on("synced", () => {
      syncTextarea();
      renderVersion();
    }),
    doc.events.on("rejected", ({ error }) => {
      ui.docError.textContent = `Edit refused (${error.message}); reloaded the document.`;
      syncTextarea();
    }),
    doc.events.on("presence", () => {
      syncCarets();
      renderPresence();
    }),
    doc.events.on("locks", renderLocks),
    doc.events.on("event", (message) => {
      if (message.event === "operation_applied") addHistory(message);
    }),
  );
  void loadHistory(doc);
  sendPresence();
}

function isTextDocument(doc: DocHandle | undefined): boolean {
  return typeof (doc?.content as { text?: unknown } | null)?.text === "string";
}

function textOf(doc: DocHandle): string {
  const text = (doc.content as { text?: unknown } | null)?.text;
  return typeof text === "string" ? text : "";
}

// ---- editing ----

ui.text.addEventListener("compositionstart", () => state.composing = true);
ui.text.addEventListener("compositionend", () => {
  state.composing = false;
  onInput();
});
ui.text.addEventListener("input", () => {
  if (!state.composing) onInput();
});
for (const type of ["select", "keyup", "mouseup", "focus"]) {
  ui.text.addEventListener(type, () => sendPresence());
}
ui.text.addEventListener("scroll", () => ui.overlay.scrollTop = ui.text.scrollTop);

function onInput(): void {
  const doc = state.doc;
  if (doc === undefined) return;
  const after = ui.text.value;
  const op = textEditOp(state.shadow, after, TEXT_PATH, ui.text.selectionEnd);
  state.shadow = after;
  if (op.length > 0) {
    try {
      doc.submit(op);
    } catch (error) {
      ui.docError.textContent = (error as Error).message;
      syncTextarea();
    }
  }
  sendPresence();
  renderStatus(state.client?.status ?? "idle");
}

/**
 * A remote op arrived (already transformed into our local view): keep our caret in place,
 * move others' carets with it (the author's own caret moves past their insert).
 */
function applyRemote(op: Op, author: string | undefined, version: number): void {
  const doc = state.doc;
  if (doc === undefined) return;
  const text = textOf(doc);
  const focused = document.activeElement === ui.text;
  const selection = transformSelection(
    { start: ui.text.selectionStart, end: ui.text.selectionEnd },
    op,
    TEXT_PATH,
    { length: text.length },
  );
  const scroll = ui.text.scrollTop;
  ui.text.value = text;
  state.shadow = text;
  if (focused) ui.text.setSelectionRange(selection.start, selection.end);
  ui.text.scrollTop = scroll;
  logOp(op, author, version);
  moveCarets(op, author, version);
}

/** Remember an op applied at `version`, for carets reported at an older version. */
function logOp(op: Op, author: string | undefined, version: number): void {
  if (op.length === 0) return;
  opLog.push({ version, op, author });
  if (opLog.length > OP_LOG_LIMIT) opLog.shift();
}

/** Reset the textarea to the document (after a resync or a rejected op). */
function syncTextarea(): void {
  const doc = state.doc;
  if (doc === undefined) return;
  const text = textOf(doc);
  if (ui.text.value === text) return;
  const start = Math.min(ui.text.selectionStart, text.length);
  const end = Math.min(ui.text.selectionEnd, text.length);
  ui.text.value = text;
  state.shadow = text;
  ui.text.setSelectionRange(start, end);
  renderOverlay();
}

function renderVersion(): void {
  const doc = state.doc;
  ui.version.textContent = String(doc?.version ?? 0);
  renderStatus(state.client?.status ?? "idle");
}

// ---- presence ----

/** Others' carets in our local coordinates, by session. */
interface Caret {
  selection: Selection;
  /** Server version the caret already accounts for. */
  version: number;
  /** `updated_at` of the presence record it came from. */
  updatedAt: number;
}
const carets = new Map<string, Caret>();
/** Recent remote ops (local coordinates), to bring late presence up to date. */
const opLog: Array<{ version: number; op: Op; author: string | undefined }> = [];
const OP_LOG_LIMIT = 200;

/** Move carets through an op: a remote one at `version` (by `author`), or a local one. */
function moveCarets(op: Op, author: string | undefined, version: number | undefined): void {
  const length = textOf(state.doc!).length;
  for (const [session, caret] of carets) {
    if (version !== undefined && caret.version >= version) continue;
    caret.selection = transformSelection(caret.selection, op, TEXT_PATH, {
      length,
      pushedByInsertAt: author !== undefined && session === author,
    });
    if (version !== undefined) caret.version = version;
  }
  renderPresence();
}

/**
 * Take new presence records: each selection is in server coordinates at the version the
 * sender reported; replay the ops we saw since then and our own unacknowledged edits.
 */
function syncCarets(): void {
  const doc = state.doc;
  if (doc === undefined) return;
  for (const session of carets.keys()) if (!doc.presence.has(session)) carets.delete(session);
  for (const [session, presence] of doc.presence) {
    const selection = selectionOf(presence);
    if (selection === undefined) {
      carets.delete(session);
      continue;
    }
    if (carets.get(session)?.updatedAt === presence.updated_at) continue;
    const reported = (presence.state as { version?: unknown } | null)?.version;
    const at = typeof reported === "number" ? reported : doc.version;
    let moved = selection;
    for (const entry of opLog) {
      if (entry.version <= at) continue;
      moved = transformSelection(moved, entry.op, TEXT_PATH, {
        pushedByInsertAt: entry.author === session,
      });
    }
    moved = transformSelection(moved, doc.localOp, TEXT_PATH, {
      length: textOf(doc).length,
    });
    carets.set(session, {
      selection: moved,
      version: Math.max(at, doc.version),
      updatedAt: presence.updated_at,
    });
  }
}

/** True when the caret moved while edits were unacknowledged (sent once they are). */
let presenceDue = false;
let presenceQueued = false;
/**
 * Publish my caret in server coordinates: only when all my edits are acknowledged (then the
 * local view is exactly the server version); otherwise after the next ack.
 */
function sendPresence(): void {
  if (presenceQueued) return;
  presenceQueued = true;
  queueMicrotask(() => {
    presenceQueued = false;
    const doc = state.doc;
    if (doc === undefined) return;
    if (doc.queued > 0) {
      presenceDue = true;
      return;
    }
    presenceDue = false;
    doc.setPresence({
      name: state.auth.user?.username ?? "someone",
      color: colorFor(state.client?.sessionId ?? ""),
      selection: { start: ui.text.selectionStart, end: ui.text.selectionEnd },
      version: doc.version,
    });
  });
}

function colorFor(key: string): string {
  let h = 0;
  for (let i = 0; i < key.length; i++) h = (h * 31 + key.charCodeAt(i)) >>> 0;
  return COLORS[h % COLORS.length]!;
}

/** Another user's chosen color, if it is a plain hex color (it is their input). */
function safeColor(color: unknown, session: string): string {
  return typeof color === "string" && /^#[0-9a-f]{6}$/i.test(color) ? color : colorFor(session);
}

function selectionOf(presence: PresenceInfo): { start: number; end: number } | undefined {
  const s = (presence.state as { selection?: { start?: unknown; end?: unknown } } | null)
    ?.selection;
  if (typeof s?.start !== "number" || typeof s.end !== "number") return undefined;
  return { start: s.start, end: s.end };
}

function renderPresence(): void {
  const doc = state.doc;
  const items: DomElement[] = [];
  const me = document.createElement("li");
  me.style.setProperty("--c", colorFor(state.client?.sessionId ?? ""));
  me.textContent = `${state.auth.user?.username ?? "me"} (you)`;
  items.push(me);
  for (const [session, presence] of doc?.presence ?? []) {
    const li = document.createElement("li");
    const st = presence.state as { name?: string; color?: string } | null;
    li.style.setProperty("--c", safeColor(st?.color, session));
    const sel = carets.get(session)?.selection;
    li.textContent = `${st?.name ?? presence.user_id.slice(0, 8)}` +
      (sel ? ` · at ${lineCol(textOf(doc!), sel.end)}` : "");
    li.dataset.session = session;
    items.push(li);
  }
  ui.presence.replaceChildren(...items);
  renderOverlay();
}

function lineCol(text: string, index: number): string {
  const before = text.slice(0, index);
  const line = before.split("\n").length;
  return `${line}:${index - before.lastIndexOf("\n")}`;
}

/** Others' carets and selections, drawn in a mirror of the textarea. */
function renderOverlay(): void {
  const doc = state.doc;
  if (doc === undefined) return;
  const text = ui.text.value;
  const marks: Array<{ at: number; kind: "start" | "end" | "caret"; color: string; name: string }> =
    [];
  for (const [session, presence] of doc.presence) {
    const sel = carets.get(session)?.selection;
    if (sel === undefined) continue;
    const st = presence.state as { name?: string; color?: string } | null;
    const color = safeColor(st?.color, session);
    const name = st?.name ?? "";
    const start = Math.min(sel.start, text.length);
    const end = Math.min(sel.end, text.length);
    if (end > start) {
      marks.push({ at: start, kind: "start", color, name }, { at: end, kind: "end", color, name });
    }
    marks.push({ at: end, kind: "caret", color, name });
  }
  marks.sort((a, b) => a.at - b.at);
  const nodes: DomNode[] = [];
  let pos = 0;
  let open: DomElement | undefined;
  const push = (chunk: string) => {
    if (chunk === "") return;
    if (open) open.append(chunk);
    else nodes.push(document.createTextNode(chunk));
  };
  for (const mark of marks) {
    push(text.slice(pos, mark.at));
    pos = mark.at;
    if (mark.kind === "start" && open === undefined) {
      open = document.createElement("span");
      open.className = "sel";
      open.style.setProperty("--c", mark.color);
      nodes.push(open);
    } else if (mark.kind === "end") {
      open = undefined;
    } else if (mark.kind === "caret") {
      const caret = document.createElement("span");
      caret.className = "caret";
      caret.style.setProperty("--c", mark.color);
      caret.dataset.name = mark.name;
      caret.dataset.at = String(mark.at);
      nodes.push(caret);
    }
  }
  push(text.slice(pos));
  nodes.push(document.createTextNode("\u200b"));
  ui.overlay.replaceChildren(...nodes);
  ui.overlay.scrollTop = ui.text.scrollTop;
}

// ---- locks ----

ui.lock.addEventListener("click", async () => {
  const doc = state.doc;
  if (doc === undefined) return;
  ui.lock.disabled = true;
  try {
    if (state.myLockId !== undefined) {
      const id = state.myLockId;
      state.myLockId = undefined;
      clearInterval(state.lockTimer);
      await doc.unlock(id);
    } else {
      const lock = await doc.lock({ ttlMs: LOCK_TTL_MS });
      state.myLockId = lock.id;
      state.lockTimer = setInterval(() => {
        if (state.myLockId === undefined) return;
        doc.lock({ ttlMs: LOCK_TTL_MS, lockId: state.myLockId }).catch(() => {});
      }, LOCK_TTL_MS / 3);
    }
  } catch (error) {
    ui.docError.textContent = `Lock: ${(error as Error).message}`;
  } finally {
    ui.lock.disabled = false;
    renderLocks();
  }
});

function renderLocks(): void {
  const doc = state.doc;
  const mine = state.myLockId !== undefined;
  let other: string | undefined;
  for (const lock of doc?.locks.values() ?? []) {
    if (lock.id !== state.myLockId && lock.session_id !== state.client?.sessionId) {
      other = lock.owner_id === state.auth.user?.id ? "you in another window" : lock.owner_id;
    }
  }
  ui.lock.textContent = mine ? "Unlock" : "Lock";
  ui.lock.setAttribute("aria-pressed", String(mine));
  ui.lock.disabled = other !== undefined;
  ui.text.readOnly = other !== undefined || !isTextDocument(doc);
  ui.lockNote.hidden = !mine && other === undefined;
  ui.lockNote.textContent = mine
    ? "You hold the lock: others cannot edit."
    : other !== undefined
    ? `Locked by ${other}: read only.`
    : "";
}

// ---- history ----

async function loadHistory(doc: DocHandle): Promise<void> {
  const from = Math.max(0, doc.version - HISTORY_LIMIT);
  try {
    const data = await state.auth.request<{ operations: WireOperation[] }>(
      "GET",
      `/api/v1/documents/${doc.id}/history?from_version=${from}&page_size=${HISTORY_LIMIT}`,
    );
    if (state.doc !== doc) return;
    const known = new Set(state.history);
    const lines = data.operations.map(describe).filter((line) => !known.has(line));
    state.history = [...lines, ...state.history].slice(-HISTORY_LIMIT);
    renderHistory();
  } catch (error) {
    console.warn("aetherflow: history", error);
  }
}

function addHistory(message: ServerMessage): void {
  const op = message.operation as WireOperation | null;
  if (op === null) return;
  const line = describe(op);
  if (state.history.includes(line)) return;
  state.history.push(line);
  if (state.history.length > HISTORY_LIMIT) state.history.shift();
  renderHistory();
}

function describe(op: WireOperation): string {
  const name = (state.doc?.presence.get(op.session_id)?.state as { name?: string } | null)?.name;
  const who = op.session_id === state.client?.sessionId
    ? "you"
    : `${name ?? op.author_id.slice(-6)}#${op.session_id.slice(-4)}`;
  const parts = op.components.map((c) => {
    switch (c.type) {
      case "text_insert":
        return `+${
          JSON.stringify(c.text.length > 24 ? c.text.slice(0, 24) + "…" : c.text)
        }@${c.offset}`;
      case "text_delete":
        return `−${c.length}@${c.offset}`;
      default:
        return c.type;
    }
  });
  return `v${op.version} ${who}: ${parts.join(" ")}`;
}

function renderHistory(): void {
  ui.history.replaceChildren(
    ...[...state.history].reverse().map((line) => {
      const li = document.createElement("li");
      li.textContent = line;
      return li;
    }),
  );
}

renderStatus("idle");
