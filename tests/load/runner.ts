/**
 * The load tool's engine: runs one scenario (scenarios.ts) against a running gateway and
 * returns a {@link LoadReport}. Bounded by time (`durationMs`) and count (`maxRequests`);
 * refuses non-loopback targets unless `allowRemote`.
 *
 * @example
 * ```ts
 * const report = await runLoad({ baseUrl: "http://127.0.0.1:8080", scenario: "basic",
 *   durationMs: 3_000, username: "dev", password: "dev-password" });
 * report.totals.errorRate;
 * ```
 * @module
 */
import { LatencyHistogram, type LatencySummary } from "./latency.ts";
import { type ScenarioKind, SCENARIOS } from "./scenarios.ts";
import { LoadWsClient, type ServerMessage, SocketClosedError } from "./ws_client.ts";

/** Options for {@link runLoad}. Unset fields take the scenario's defaults. */
export interface LoadOptions {
  /** Gateway base URL, e.g. `http://127.0.0.1:8080`. */
  baseUrl: string;
  /** Scenario name (see scenarios.ts). */
  scenario: string;
  concurrency?: number;
  durationMs?: number;
  /** Target total rate per second (0 = unpaced). */
  rate?: number;
  /** Stop after this many requests (or ops) in total. */
  maxRequests?: number;
  /** Reuse HTTP connections (default true). */
  keepAlive?: boolean;
  /** Per-request timeout in ms (default 10 000). */
  timeoutMs?: number;
  username?: string;
  password?: string;
  /** Documents used by the http and websocket scenarios (default: websocket N/10, http 4). */
  documents?: number;
  /** Allow a non-loopback target. */
  allowRemote?: boolean;
  /** Stop early. */
  signal?: AbortSignal;
  /** Called about once a second with the progress so far. */
  onProgress?: (progress: LoadProgress) => void;
}

/** A progress snapshot. */
export interface LoadProgress {
  scenario: string;
  elapsedMs: number;
  requests: number;
  errors: number;
  /** Requests per second over the last interval. */
  rate: number;
  /** p99 of everything so far, ms. */
  p99: number;
}

/** Counters of one request kind. */
export interface KindReport {
  requests: number;
  ok: number;
  errors: number;
  errorRate: number;
  latency: LatencySummary;
}

/** Rate-limit observations (ratelimit scenario; headers counted on every response). */
export interface RateLimitReport {
  /** 429 responses. */
  limited: number;
  limitedWithRetryAfter: number;
  limitedWithPolicy: number;
  limitedWithRateLimit: number;
  /** 2xx responses carrying RateLimit-Policy and RateLimit. */
  acceptedWithHeaders: number;
  accepted: number;
  acceptedPerSecond: number;
  retryAfterMin: number;
  retryAfterMax: number;
  /** Distinct RateLimit-Policy values seen. */
  policies: string[];
  /** ms from the start until the first 429 (NaN if none). */
  firstLimitedAtMs: number;
}

/** WebSocket scenario observations. */
export interface WebSocketReport {
  sockets: number;
  documents: number;
  opsSent: number;
  opsAcked: number;
  /** Events that reached a subscriber other than the op's author. */
  deliveries: number;
  /** Deliveries expected (acked ops × other subscribers at send time). */
  deliveriesExpected: number;
  deliveriesPerSecond: number;
  /** Op send → receipt at another subscriber, ms. */
  fanout: LatencySummary;
  /** Close codes of sockets the server closed. */
  closes: Record<string, number>;
}

/** Gateway memory (loopback targets, read from /proc). */
export interface MemoryReport {
  pid: number;
  rssStartBytes: number;
  /** RSS once warmed up (sampled at 20% of the run), the baseline for leak checks. */
  rssWarmBytes: number;
  rssEndBytes: number;
  /** End vs start. */
  growthPercent: number;
  /** End vs warm. */
  growthSinceWarmPercent: number;
}

/** The final report. */
export interface LoadReport {
  scenario: string;
  kind: ScenarioKind;
  baseUrl: string;
  config: {
    concurrency: number;
    durationMs: number;
    rate: number;
    maxRequests: number | null;
    keepAlive: boolean;
    timeoutMs: number;
  };
  startedAt: string;
  elapsedMs: number;
  totals: {
    requests: number;
    ok: number;
    errors: number;
    successRate: number;
    errorRate: number;
    throughputPerSecond: number;
  };
  latency: LatencySummary;
  byKind: Record<string, KindReport>;
  errorsByKind: Record<string, number>;
  statusCodes: Record<string, number>;
  rateLimit?: RateLimitReport;
  websocket?: WebSocketReport;
  memory?: MemoryReport;
}

/**
 * True for loopback hosts (127.0.0.0/8, ::1, localhost).
 * @throws {TypeError} for a URL that does not parse
 */
export function isLoopbackUrl(url: string): boolean {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

class Recorder {
  all = new LatencyHistogram();
  kinds = new Map<string, { h: LatencyHistogram; ok: number; errors: number }>();
  errorsByKind = new Map<string, number>();
  statusCodes = new Map<string, number>();
  requests = 0;
  ok = 0;
  errors = 0;

  record(kind: string, ms: number, ok: boolean, errorKind?: string, status?: number): void {
    this.requests++;
    this.all.record(ms);
    let k = this.kinds.get(kind);
    if (k === undefined) {
      k = { h: new LatencyHistogram(), ok: 0, errors: 0 };
      this.kinds.set(kind, k);
    }
    k.h.record(ms);
    if (status !== undefined) bump(this.statusCodes, String(status));
    if (ok) {
      this.ok++;
      k.ok++;
    } else {
      this.errors++;
      k.errors++;
      bump(this.errorsByKind, errorKind ?? "error");
    }
  }
}

function bump(map: Map<string, number>, key: string, by = 1): void {
  map.set(key, (map.get(key) ?? 0) + by);
}

/** Paces workers to a total rate: slot n is due at start + n / rate. */
class Pacer {
  #next = 0;
  constructor(readonly rate: number, readonly start: number) {}
  /** When the next slot is due (`start` when unpaced). */
  claim(): number {
    if (this.rate <= 0) return this.start;
    return this.start + (this.#next++ * 1000) / this.rate;
  }
}

function sleep(ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));
}

interface HttpResult {
  status: number;
  headers: Headers;
  // deno-lint-ignore no-explicit-any
  body: any;
}

/**
 * Run one scenario and return its report.
 * @throws {RangeError} for an unknown scenario, a non-loopback target without
 *   `allowRemote`, or non-positive sizes
 * @throws {Error} when setup (login, document creation) fails
 */
export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const found = SCENARIOS[options.scenario];
  if (found === undefined) {
    throw new RangeError(
      `Unknown scenario "${options.scenario}" (known: ${Object.keys(SCENARIOS).join(", ")})`,
    );
  }
  const scenario = found;
  const baseUrl = options.baseUrl.replace(/\/$/, "");
  if (!options.allowRemote && !isLoopbackUrl(baseUrl)) {
    throw new RangeError(`Refusing non-loopback target ${baseUrl} without --allow-remote`);
  }
  const concurrency = options.concurrency ?? scenario.concurrency;
  const durationMs = options.durationMs ?? scenario.durationMs;
  const rate = options.rate ?? scenario.rate;
  const maxRequests = options.maxRequests ?? Infinity;
  const keepAlive = options.keepAlive ?? true;
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (!(concurrency >= 1) || !(durationMs > 0) || !(rate >= 0) || !(maxRequests >= 1)) {
    throw new RangeError("concurrency, duration and max requests must be positive");
  }
  const username = options.username ?? "dev";
  const password = options.password ?? "dev-password";
  const client = keepAlive ? undefined : Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
  const rec = new Recorder();
  const ctx = { stop: false };

  async function http(
    method: string,
    path: string,
    init: { token?: string; body?: unknown } = {},
  ): Promise<HttpResult> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      const headers: Record<string, string> = {};
      if (init.token) headers.authorization = `Bearer ${init.token}`;
      if (init.body !== undefined) headers["content-type"] = "application/json";
      const response = await fetch(`${baseUrl}${path}`, {
        method,
        headers,
        body: init.body === undefined ? undefined : JSON.stringify(init.body),
        signal: controller.signal,
        ...(client ? { client } : {}),
      });
      const text = await response.text();
      let body: unknown = null;
      try {
        body = text ? JSON.parse(text) : null;
      } catch { /* non-JSON body: keep null */ }
      return { status: response.status, headers: response.headers, body };
    } finally {
      clearTimeout(timer);
    }
  }

  /** A measured HTTP request; `expect` decides success (default 2xx). */
  async function measured(
    kind: string,
    method: string,
    path: string,
    init: { token?: string; body?: unknown } = {},
    expect: (status: number) => boolean = (s) => s >= 200 && s < 300,
  ): Promise<HttpResult | undefined> {
    const t = performance.now();
    try {
      const result = await http(method, path, init);
      const ok = expect(result.status);
      const errorKind = ok
        ? undefined
        : result.status === 429
        ? "http_429"
        : result.status >= 500
        ? "http_5xx"
        : `http_${result.status}`;
      rec.record(kind, performance.now() - t, ok, errorKind, result.status);
      return result;
    } catch (error) {
      const name = (error as Error).name;
      rec.record(
        kind,
        performance.now() - t,
        false,
        name === "AbortError" ? "timeout" : "network",
      );
      return undefined;
    }
  }

  async function login(): Promise<{ access: string; refresh: string }> {
    const result = await http("POST", "/api/v1/auth/login", { body: { username, password } });
    if (result.status !== 200) {
      throw new Error(
        `Login as ${username} failed: ${result.status} ${JSON.stringify(result.body)}`,
      );
    }
    return { access: result.body.data.access_token, refresh: result.body.data.refresh_token };
  }

  async function createDocuments(token: string, count: number) {
    const docs: Array<{ id: string; version: number }> = [];
    for (let i = 0; i < count; i++) {
      const result = await http("POST", "/api/v1/documents", {
        token,
        body: { name: `load-${scenario.name}-${i}`, type: "text", content: { text: "" } },
      });
      if (result.status !== 200 && result.status !== 201) {
        throw new Error(
          `Creating a document failed: ${result.status} ${JSON.stringify(result.body)}`,
        );
      }
      docs.push({ id: result.body.data.id, version: result.body.data.version ?? 0 });
    }
    return docs;
  }

  const memoryPid = isLoopbackUrl(baseUrl)
    ? await listenerPid(Number(new URL(baseUrl).port || 80))
    : undefined;
  const rssStart = memoryPid === undefined ? undefined : await rssBytes(memoryPid);

  // ---- setup (not measured) ----
  let token = "";
  let docs: Array<{ id: string; version: number }> = [];
  if (scenario.kind !== "auth") {
    token = (await login()).access;
  }
  if (scenario.kind === "http") docs = await createDocuments(token, options.documents ?? 4);
  const wsDocCount = options.documents ?? Math.max(1, Math.round(concurrency / 10));
  if (scenario.kind === "websocket") docs = await createDocuments(token, wsDocCount);

  // ---- run ----
  const startedAt = new Date().toISOString();
  const start = performance.now();
  const deadline = start + durationMs;
  const pacer = new Pacer(rate, start);
  let issued = 0;
  const onAbort = () => ctx.stop = true;
  options.signal?.addEventListener("abort", onAbort);
  const more = () =>
    !ctx.stop && performance.now() < deadline && issued < maxRequests &&
    !(options.signal?.aborted ?? false);
  /** Wait for a pacing slot; false when the run is over. */
  async function slot(): Promise<boolean> {
    if (!more()) return false;
    const due = pacer.claim();
    if (due >= deadline) return false; // the slot falls after the end of the run
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    if (!more()) return false;
    issued++;
    return true;
  }

  let lastCount = 0;
  let lastAt = start;
  let rssWarm: number | undefined;
  let rssWarmSampling = false;
  const progress = setInterval(() => {
    const now = performance.now();
    if (memoryPid !== undefined && !rssWarmSampling && now - start >= durationMs * 0.2) {
      rssWarmSampling = true;
      rssBytes(memoryPid).then((bytes) => rssWarm = bytes);
    }
    options.onProgress?.({
      scenario: scenario.name,
      elapsedMs: now - start,
      requests: rec.requests,
      errors: rec.errors,
      rate: ((rec.requests - lastCount) * 1000) / Math.max(1, now - lastAt),
      p99: rec.all.quantile(0.99),
    });
    lastCount = rec.requests;
    lastAt = now;
  }, 1000);

  const rl = {
    limited: 0,
    limitedWithRetryAfter: 0,
    limitedWithPolicy: 0,
    limitedWithRateLimit: 0,
    acceptedWithHeaders: 0,
    accepted: 0,
    retryAfterMin: Infinity,
    retryAfterMax: -Infinity,
    policies: new Set<string>(),
    firstLimitedAtMs: NaN,
  };
  let ws: WebSocketReport | undefined;

  try {
    if (scenario.kind === "http") {
      await Promise.all(Array.from({ length: concurrency }, (_, w) => httpWorker(w)));
    } else if (scenario.kind === "ratelimit") {
      await Promise.all(Array.from({ length: concurrency }, () => rateLimitWorker()));
    } else if (scenario.kind === "auth") {
      await Promise.all(Array.from({ length: concurrency }, (_, w) => authWorker(w)));
    } else {
      ws = await websocketRun();
    }
  } finally {
    clearInterval(progress);
    options.signal?.removeEventListener("abort", onAbort);
    client?.close();
  }
  const elapsedMs = performance.now() - start;

  async function httpWorker(w: number): Promise<void> {
    const mix = ["doc.get", "doc.get", "doc.get", "doc.get", "op.apply", "op.apply", "op.apply"]
      .concat(["doc.list", "auth.me", "ping"]);
    let i = w;
    while (await slot()) {
      const kind = mix[i++ % mix.length]!;
      const doc = docs[i % docs.length]!;
      if (kind === "doc.get") {
        await measured(kind, "GET", `/api/v1/documents/${doc.id}`, { token });
      } else if (kind === "op.apply") {
        const result = await measured(kind, "POST", `/api/v1/documents/${doc.id}/operations`, {
          token,
          body: {
            base_version: doc.version,
            components: [{ type: "text_insert", path: ["text"], offset: 0, text: "x" }],
          },
        });
        const version = result?.body?.data?.version;
        if (typeof version === "number" && version > doc.version) doc.version = version;
      } else if (kind === "doc.list") {
        await measured(kind, "GET", "/api/v1/documents?page_size=10", { token });
      } else if (kind === "auth.me") {
        await measured(kind, "GET", "/api/v1/auth/me", { token });
      } else {
        await measured(kind, "GET", "/ping");
      }
    }
  }

  async function rateLimitWorker(): Promise<void> {
    while (await slot()) {
      const result = await measured("auth.me", "GET", "/api/v1/auth/me", { token });
      if (result === undefined) continue;
      const policy = result.headers.get("ratelimit-policy");
      const state = result.headers.get("ratelimit");
      if (policy) { for (const p of policy.split(/,\s*/)) rl.policies.add(p); }
      if (result.status === 429) {
        rl.limited++;
        if (Number.isNaN(rl.firstLimitedAtMs)) rl.firstLimitedAtMs = performance.now() - start;
        const retryAfter = result.headers.get("retry-after");
        if (retryAfter !== null && /^\d+$/.test(retryAfter)) {
          rl.limitedWithRetryAfter++;
          rl.retryAfterMin = Math.min(rl.retryAfterMin, Number(retryAfter));
          rl.retryAfterMax = Math.max(rl.retryAfterMax, Number(retryAfter));
        }
        if (policy && /q=\d+/.test(policy)) rl.limitedWithPolicy++;
        if (state && /r=\d+/.test(state) && /t=\d+/.test(state)) rl.limitedWithRateLimit++;
      } else if (result.status >= 200 && result.status < 300) {
        rl.accepted++;
        if (policy && state) rl.acceptedWithHeaders++;
      }
    }
  }

  async function authWorker(w: number): Promise<void> {
    const isUnauthorized = (s: number) => s === 401;
    // Odd workers start with the reuse cycle, so a short run covers both kinds of cycle.
    let cycle = w;
    while (await slot()) {
      const loggedIn = await measured("auth.login", "POST", "/api/v1/auth/login", {
        body: { username, password },
      });
      if (loggedIn?.status !== 200) continue;
      let access: string = loggedIn.body.data.access_token;
      let refresh: string = loggedIn.body.data.refresh_token;
      const first = refresh;
      let rotated = true;
      for (let r = 0; r < 3 && (await slot()); r++) {
        const result = await measured("auth.refresh", "POST", "/api/v1/auth/refresh", {
          body: { refresh_token: refresh },
        });
        if (result?.status !== 200) {
          rotated = false;
          break;
        }
        access = result.body.data.access_token;
        refresh = result.body.data.refresh_token;
      }
      if (!rotated || !(await slot())) continue;
      await measured("auth.me", "GET", "/api/v1/auth/me", { token: access });
      if (cycle++ % 2 === 0) {
        if (await slot()) {
          await measured("auth.logout", "POST", "/api/v1/auth/logout", {
            token: access,
          });
        }
      } else {
        // Reuse of a rotated refresh token must fail and revoke the whole family.
        if (!(await slot())) continue;
        await measured("auth.refresh_reused", "POST", "/api/v1/auth/refresh", {
          body: { refresh_token: first },
        }, isUnauthorized);
        if (!(await slot())) continue;
        await measured("auth.refresh_after_reuse", "POST", "/api/v1/auth/refresh", {
          body: { refresh_token: refresh },
        }, isUnauthorized);
      }
    }
  }

  async function websocketRun(): Promise<WebSocketReport> {
    const wsUrl = `${baseUrl.replace(/^http/, "ws")}/ws`;
    const fanout = new LatencyHistogram();
    const closes = new Map<string, number>();
    const sent = new Map<string, { at: number; sender: number; remaining: number }>();
    const members = docs.map(() => new Set<number>());
    const runId = crypto.randomUUID().slice(0, 8);
    let opsSent = 0;
    let opsAcked = 0;
    let deliveries = 0;
    let deliveriesExpected = 0;

    async function open(i: number, docIndex: number): Promise<LoadWsClient | undefined> {
      const doc = docs[docIndex]!;
      const t = performance.now();
      let c: LoadWsClient;
      try {
        c = await LoadWsClient.connect(wsUrl);
      } catch {
        rec.record("ws.connect", performance.now() - t, false, "ws_connect_failed");
        return undefined;
      }
      rec.record("ws.connect", performance.now() - t, true);
      c.onEvent = (m: ServerMessage, at: number) => {
        if (m.event !== "operation_applied") return;
        if (typeof m.version === "number" && m.version > doc.version) doc.version = m.version;
        const key = m.operation?.client_op_id;
        const entry = typeof key === "string" ? sent.get(key) : undefined;
        if (entry === undefined || entry.sender === i) return;
        fanout.record(at - entry.at);
        deliveries++;
        if (--entry.remaining <= 0) sent.delete(key);
      };
      for (
        const [kind, message] of [["ws.auth", { type: "auth", token }], [
          "ws.subscribe",
          { type: "subscribe", document_id: doc.id },
        ]] as const
      ) {
        const s = performance.now();
        try {
          const reply = await c.request(message);
          const ok = reply.type === "reply";
          rec.record(kind, performance.now() - s, ok, ok ? undefined : `ws_${reply.status}`);
          if (!ok) {
            await c.close();
            return undefined;
          }
          if (kind === "ws.subscribe" && reply.data.version > doc.version) {
            doc.version = reply.data.version;
          }
        } catch (error) {
          rec.record(kind, performance.now() - s, false, closeKind(error));
          return undefined;
        }
      }
      members[docIndex]!.add(i);
      return c;
    }

    // Every socket subscribes before any op is sent, so each op has a known audience.
    const initial = await Promise.all(
      Array.from({ length: concurrency }, (_, i) => open(i, i % docs.length)),
    );

    async function socketWorker(i: number): Promise<void> {
      const docIndex = i % docs.length;
      let seq = 0;
      let c: LoadWsClient | undefined = initial[i];
      try {
        while (more()) {
          c ??= await open(i, docIndex);
          if (c === undefined) {
            await sleep(100);
            continue;
          }
          if (!(await slot())) break;
          const doc = docs[docIndex]!;
          const clientOpId = `${runId}-${i}-${seq++}`;
          const at = performance.now();
          const others = members[docIndex]!.size - 1;
          if (others > 0) sent.set(clientOpId, { at, sender: i, remaining: others });
          opsSent++;
          try {
            const reply = await c.request({
              type: "op",
              document_id: doc.id,
              base_version: doc.version,
              client_op_id: clientOpId,
              components: [{ type: "text_insert", path: ["text"], offset: 0, text: "x" }],
            });
            const ok = reply.type === "ack";
            rec.record("ws.op", performance.now() - at, ok, ok ? undefined : `ws_${reply.status}`);
            if (ok) {
              opsAcked++;
              deliveriesExpected += others;
              if (reply.version > doc.version) doc.version = reply.version;
            } else sent.delete(clientOpId);
          } catch (error) {
            sent.delete(clientOpId);
            rec.record("ws.op", performance.now() - at, false, closeKind(error));
            members[docIndex]!.delete(i);
            bump(closes, String(c.closeEvent?.code ?? 0));
            c = undefined;
          }
        }
      } finally {
        sending--;
        if (c !== undefined) {
          // Stay subscribed until every socket stopped sending and every delivery landed.
          await drainDeliveries();
          members[docIndex]!.delete(i);
          await c.close();
        }
      }
    }

    let sending = concurrency;
    let drained: Promise<void> | undefined;
    function drainDeliveries(): Promise<void> {
      drained ??= (async () => {
        const until = performance.now() + timeoutMs + 2_000;
        while ((sending > 0 || sent.size > 0) && performance.now() < until) await sleep(20);
      })();
      return drained;
    }

    await Promise.all(Array.from({ length: concurrency }, (_, i) => socketWorker(i)));
    const seconds = Math.max(0.001, (performance.now() - start) / 1000);
    return {
      sockets: concurrency,
      documents: docs.length,
      opsSent,
      opsAcked,
      deliveries,
      deliveriesExpected,
      deliveriesPerSecond: deliveries / seconds,
      fanout: fanout.summary(),
      closes: Object.fromEntries(closes),
    };
  }

  const seconds = elapsedMs / 1000;
  const byKind: Record<string, KindReport> = {};
  for (const [kind, k] of [...rec.kinds].sort(([a], [b]) => a.localeCompare(b))) {
    const n = k.ok + k.errors;
    byKind[kind] = {
      requests: n,
      ok: k.ok,
      errors: k.errors,
      errorRate: n === 0 ? 0 : k.errors / n,
      latency: k.h.summary(),
    };
  }
  const report: LoadReport = {
    scenario: scenario.name,
    kind: scenario.kind,
    baseUrl,
    config: {
      concurrency,
      durationMs,
      rate,
      maxRequests: Number.isFinite(maxRequests) ? maxRequests : null,
      keepAlive,
      timeoutMs,
    },
    startedAt,
    elapsedMs,
    totals: {
      requests: rec.requests,
      ok: rec.ok,
      errors: rec.errors,
      successRate: rec.requests === 0 ? 0 : rec.ok / rec.requests,
      errorRate: rec.requests === 0 ? 0 : rec.errors / rec.requests,
      throughputPerSecond: rec.requests / seconds,
    },
    latency: rec.all.summary(),
    byKind,
    errorsByKind: Object.fromEntries([...rec.errorsByKind].sort()),
    statusCodes: Object.fromEntries([...rec.statusCodes].sort()),
  };
  if (scenario.kind === "ratelimit") {
    report.rateLimit = {
      limited: rl.limited,
      limitedWithRetryAfter: rl.limitedWithRetryAfter,
      limitedWithPolicy: rl.limitedWithPolicy,
      limitedWithRateLimit: rl.limitedWithRateLimit,
      acceptedWithHeaders: rl.acceptedWithHeaders,
      accepted: rl.accepted,
      acceptedPerSecond: rl.accepted / seconds,
      retryAfterMin: rl.limited ? rl.retryAfterMin : NaN,
      retryAfterMax: rl.limited ? rl.retryAfterMax : NaN,
      policies: [...rl.policies].sort(),
      firstLimitedAtMs: rl.firstLimitedAtMs,
    };
  }
  if (ws !== undefined) report.websocket = ws;
  if (memoryPid !== undefined && rssStart !== undefined) {
    const rssEnd = await rssBytes(memoryPid);
    if (rssEnd !== undefined) {
      const warm = rssWarm ?? rssStart;
      report.memory = {
        pid: memoryPid,
        rssStartBytes: rssStart,
        rssWarmBytes: warm,
        rssEndBytes: rssEnd,
        growthPercent: ((rssEnd - rssStart) / rssStart) * 100,
        growthSinceWarmPercent: ((rssEnd - warm) / warm) * 100,
      };
    }
  }
  return report;
}

function closeKind(error: unknown): string {
  return error instanceof SocketClosedError ? `ws_close_${error.code}` : "ws_error";
}

/** The pid listening on 127.0.0.1:`port` (Linux /proc), if visible to this user. */
export async function listenerPid(port: number): Promise<number | undefined> {
  const inodes = new Set<string>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      if (local === undefined || fields[3] !== "0A") continue; // 0A = LISTEN
      if (parseInt(local.split(":")[1] ?? "", 16) === port) inodes.add(fields[9] ?? "");
    }
  }
  if (inodes.size === 0) return undefined;
  try {
    for await (const entry of Deno.readDir("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      try {
        for await (const fd of Deno.readDir(`/proc/${entry.name}/fd`)) {
          const target = await Deno.readLink(`/proc/${entry.name}/fd/${fd.name}`).catch(() => "");
          const m = /^socket:\[(\d+)\]$/.exec(target);
          if (m && inodes.has(m[1]!)) return Number(entry.name);
        }
      } catch { /* not ours or gone */ }
    }
  } catch { /* no /proc */ }
  return undefined;
}

/** Resident set size of `pid` in bytes (Linux /proc), undefined if unreadable. */
export async function rssBytes(pid: number): Promise<number | undefined> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
