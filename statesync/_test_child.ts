/**
 * Test helper: run `statesync/main.ts` as a child process and watch its log lines.
 * @module
 */
import { readLines } from "../kernel/testing.ts";

/** Collects a child's stderr lines; {@link LineWatcher.wait} resolves on a matching line. */
export class LineWatcher {
  #lines: string[] = [];
  /** Every line so far. */
  get lines(): readonly string[] {
    return this.#lines;
  }
  #waiters: { needle: string; resolve: (line: string) => void }[] = [];
  #ended = false;
  readonly done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      for await (const line of readLines(stream)) this.#add(line);
      this.#ended = true;
      for (const waiter of this.#waiters) waiter.resolve("");
    })();
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

/** Start `main.ts` with `env` (info logs on stderr, watched by the returned {@link LineWatcher}). */
export function startMain(
  env: Record<string, string>,
): { child: Deno.ChildProcess; log: LineWatcher } {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./main.ts", import.meta.url).pathname],
    env: { AETHERFLOW_STATESYNC_LOG_LEVEL: "info", ...env },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  return { child, log: new LineWatcher(child.stderr) };
}
