/**
 * Test helpers shared by every package: free ports, temp directories removed after
 * use, and a real etcd server on loopback.
 *
 * @example
 * ```ts
 * await using dir = await tempDir();
 * const port = freePort();
 * await using etcd = await startEtcd();
 * ```
 * @module
 */

/** A TCP port the OS reports free on 127.0.0.1 right now. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** A UDP port the OS reports free on 127.0.0.1 right now. */
export function freeUdpPort(): number {
  const socket = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const { port } = socket.addr as Deno.NetAddr;
  socket.close();
  return port;
}

/** A temporary directory, removed with everything in it on dispose. */
export interface TempDir extends AsyncDisposable {
  readonly path: string;
}

/** Create a temporary directory that `await using` removes. */
export async function tempDir(prefix = "aetherflow-"): Promise<TempDir> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
    },
  };
}

/** A running etcd server. */
export interface EtcdServer extends AsyncDisposable {
  /** Client URL, e.g. `http://127.0.0.1:23790`. */
  readonly endpoint: string;
  /** Stop the server and remove its data directory. */
  stop(): Promise<void>;
}

/** Where the etcd binary is looked for (Debian's `etcd-server` installs /usr/bin/etcd). */
export const ETCD_BINARY = Deno.env.get("ETCD_BINARY") ?? "/usr/bin/etcd";

/**
 * Start a real etcd on loopback with a temp data dir and wait until it reports healthy.
 * @throws {Error} when the binary is missing (install Debian's `etcd-server`) or it does
 *   not become healthy within `timeoutMs`
 */
export async function startEtcd(options: { timeoutMs?: number } = {}): Promise<EtcdServer> {
  try {
    await Deno.stat(ETCD_BINARY);
  } catch {
    throw new Error(`etcd not found at ${ETCD_BINARY}: install Debian's etcd-server (see .ci/run)`);
  }
  const dir = await tempDir("aetherflow-etcd-");
  const clientPort = freePort();
  const peerPort = freePort();
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const child = new Deno.Command(ETCD_BINARY, {
    args: [
      "--data-dir",
      dir.path,
      "--listen-client-urls",
      endpoint,
      "--advertise-client-urls",
      endpoint,
      "--listen-peer-urls",
      `http://127.0.0.1:${peerPort}`,
      "--initial-advertise-peer-urls",
      `http://127.0.0.1:${peerPort}`,
      "--initial-cluster",
      `default=http://127.0.0.1:${peerPort}`,
      "--log-level",
      "error",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = child.stderr.pipeTo(new WritableStream());
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      child.kill("SIGTERM");
    } catch { /* already exited */ }
    await child.status;
    await stderr.catch(() => {});
    await dir[Symbol.asyncDispose]();
  };
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  while (true) {
    try {
      const response = await fetch(`${endpoint}/health`);
      const body = await response.json();
      if (body.health === "true") break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`etcd did not become healthy at ${endpoint}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { endpoint, stop, [Symbol.asyncDispose]: stop };
}

/** Whether a test's external tools are present; see {@link needs}. */
export interface ToolCheck {
  /** True when the test must not run (a tool is missing and this is not CI). */
  readonly ignore: boolean;
  /** Text for the test name: empty, or ` [NOT RUN: protoc missing]`. */
  readonly note: string;
}

/**
 * Check that external binaries a test needs are on PATH (or absolute paths exist).
 * Outside CI a missing tool marks the test ignored with the reason in its name, so the
 * summary says clearly what was not run; in CI (`CI=true`) nothing is ignored and the
 * test fails on the missing tool.
 *
 * @example
 * ```ts
 * const tools = needs("protoc");
 * Deno.test({ name: "proto/gen is fresh" + tools.note, ignore: tools.ignore, fn });
 * ```
 */
export function needs(...binaries: string[]): ToolCheck {
  const missing = binaries.filter((binary) => !onPath(binary));
  if (missing.length === 0 || Deno.env.get("CI") === "true") return { ignore: false, note: "" };
  return { ignore: true, note: ` [NOT RUN: ${missing.join(", ")} missing, see .ci/run]` };
}

function onPath(binary: string): boolean {
  const candidates = binary.includes("/")
    ? [binary]
    : (Deno.env.get("PATH") ?? "").split(":").map((dir) => `${dir}/${binary}`);
  return candidates.some((path) => {
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  });
}

/**
 * The lines of a byte stream (e.g. a child process's stdout), decoded as UTF-8.
 *
 * @example
 * ```ts
 * for await (const line of readLines(child.stderr)) if (line.includes("ready")) break;
 * ```
 */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const bytes of stream) {
    buffer += decoder.decode(bytes, { stream: true });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      yield buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
    }
  }
  buffer += decoder.decode();
  if (buffer.length > 0) yield buffer;
}

/**
 * Collects the lines of a stream (e.g. a child's stderr); {@link LineWatcher.wait} resolves
 * on the first line containing a needle.
 *
 * @example
 * ```ts
 * const log = new LineWatcher(child.stderr);
 * await log.wait("listening");
 * ```
 */
export class LineWatcher {
  #lines: string[] = [];
  #waiters: { needle: string; resolve: (line: string) => void }[] = [];
  #ended = false;
  /** Resolves when the stream has ended (every line read). */
  readonly done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      for await (const line of readLines(stream)) this.#add(line);
      this.#ended = true;
      for (const waiter of this.#waiters.splice(0)) waiter.resolve("");
    })();
  }

  /** Every line so far. */
  get lines(): readonly string[] {
    return this.#lines;
  }

  #add(line: string): void {
    this.#lines.push(line);
    this.#waiters = this.#waiters.filter((waiter) => {
      if (!line.includes(waiter.needle)) return true;
      waiter.resolve(line);
      return false;
    });
  }

  /** The first line containing `needle` ("" when the stream ends without one). */
  wait(needle: string): Promise<string> {
    const seen = this.#lines.find((line) => line.includes(needle));
    if (seen !== undefined || this.#ended) return Promise.resolve(seen ?? "");
    return new Promise((resolve) => this.#waiters.push({ needle, resolve }));
  }
}

/** A Deno script running as a child process (see {@link spawnDeno}). */
export interface DenoChild extends AsyncDisposable {
  readonly child: Deno.ChildProcess;
  /** The child's stderr lines (where the services log). */
  readonly log: LineWatcher;
  /** Send `signal` (default SIGTERM) unless it has exited; resolves with its status once its log ended. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

/**
 * Run `deno run -A <script> ...args` with `env` added to the environment, stdout discarded
 * and stderr watched. Disposing it SIGKILLs the child if still running and waits for it.
 *
 * @example
 * ```ts
 * await using service = spawnDeno(new URL("../statesync/main.ts", import.meta.url), {
 *   env: { AETHERFLOW_STATESYNC_PORT: String(freePort()) },
 * });
 * await service.log.wait("listening");
 * assert.equal((await service.stop()).code, 0);
 * ```
 */
export function spawnDeno(
  script: string | URL,
  options: { args?: readonly string[]; env?: Record<string, string> } = {},
): DenoChild {
  const path = script instanceof URL ? script.pathname : script;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", path, ...(options.args ?? [])],
    env: options.env ?? {},
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const log = new LineWatcher(child.stderr);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const stop = async (signal: Deno.Signal = "SIGTERM") => {
    if (!exited) {
      try {
        child.kill(signal);
      } catch {
        // It exited meanwhile: the status tells how.
      }
    }
    const result = await status;
    await log.done;
    return result;
  };
  return { child, log, stop, [Symbol.asyncDispose]: async () => void await stop("SIGKILL") };
}

/**
 * A small, fast seeded PRNG (mulberry32): floats in [0, 1), the same sequence for the same
 * seed, so a failing randomized test can be repeated.
 *
 * @example
 * ```ts
 * const random = seededRandom(42);
 * const size = 1 + Math.floor(random() * 30);
 * ```
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The value of the first Prometheus text-format sample `name` whose labels include `labels`
 * (0 when there is none).
 *
 * @example
 * ```ts
 * const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
 * metricSample(text, "aetherflow_grpc_server_handled_total", { method: "GetStats" });
 * ```
 */
export function metricSample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name + "{") && !line.startsWith(name + " ")) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) {
      return Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return 0;
}
