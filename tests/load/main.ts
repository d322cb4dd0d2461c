/**
 * The load tool: `deno task load -- --scenario basic [flags]` against a running gateway
 * (start one with `deno task start`). Live progress on stderr, the report on stdout
 * (`--json` for scripts).
 *
 * Flags: `--scenario NAME` (basic, medium, heavy, spike, sustained, ratelimit, auth,
 * websocket), `--url http://127.0.0.1:8080`, `--concurrency N`, `--duration 30s|500ms|2m`,
 * `--rate N` (total per second, 0 = unpaced), `--max-requests N`, `--no-keep-alive`,
 * `--timeout 10s`, `--user dev --password dev-password` (or AETHERFLOW_LOAD_PASSWORD),
 * `--documents N`, `--json`, `--allow-remote`, `--list`.
 *
 * Note: the gateway's default rate limits (100 req/s per IP, 50/s per user, 100 WS
 * messages/s per socket and 500/s per user) cap what one load client can push; raise them with
 * `AETHERFLOW_GATEWAY_RATE_LIMIT__PER_IP__REFILL_PER_SECOND` etc. to measure the gateway
 * rather than its limits.
 * @module
 */
import { parseArgs } from "node:util";
import { formatProgress, formatReport } from "./report.ts";
import { runLoad } from "./runner.ts";
import { SCENARIOS } from "./scenarios.ts";

/**
 * Parse a duration: `30s`, `500ms`, `2m`, or plain milliseconds.
 * @throws {RangeError} for anything else
 */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!m) throw new RangeError(`Invalid duration "${text}" (use e.g. 30s, 500ms, 2m)`);
  const value = Number(m[1]);
  return m[2] === "s" ? value * 1000 : m[2] === "m" ? value * 60_000 : value;
}

function positive(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`--${name} must be a number >= 0`);
  return value;
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      scenario: { type: "string", default: "basic" },
      url: { type: "string", default: "http://127.0.0.1:8080" },
      concurrency: { type: "string" },
      duration: { type: "string" },
      rate: { type: "string" },
      "max-requests": { type: "string" },
      "no-keep-alive": { type: "boolean", default: false },
      timeout: { type: "string", default: "10s" },
      user: { type: "string", default: "dev" },
      password: { type: "string" },
      documents: { type: "string" },
      json: { type: "boolean", default: false },
      "allow-remote": { type: "boolean", default: false },
      list: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help || values.list) {
    console.log("Scenarios:");
    for (const s of Object.values(SCENARIOS)) {
      console.log(`  ${s.name.padEnd(10)} ${s.description}`);
    }
    return 0;
  }
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  const encoder = new TextEncoder();
  const tty = Deno.stderr.isTerminal();
  try {
    const report = await runLoad({
      baseUrl: values.url!,
      scenario: values.scenario!,
      concurrency: positive("concurrency", values.concurrency),
      durationMs: values.duration === undefined ? undefined : parseDuration(values.duration),
      rate: positive("rate", values.rate),
      maxRequests: positive("max-requests", values["max-requests"]),
      keepAlive: !values["no-keep-alive"],
      timeoutMs: parseDuration(values.timeout!),
      username: values.user,
      password: values.password ?? Deno.env.get("AETHERFLOW_LOAD_PASSWORD") ?? "dev-password",
      documents: positive("documents", values.documents),
      allowRemote: values["allow-remote"],
      signal: controller.signal,
      onProgress: (p) => {
        const line = formatProgress(p);
        Deno.stderr.writeSync(encoder.encode(tty ? `\r\x1b[2K${line}` : `${line}\n`));
      },
    });
    if (tty) Deno.stderr.writeSync(encoder.encode("\n"));
    console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
    return report.totals.requests > 0 ? 0 : 1;
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    return 2;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
  }
}

// `deno task load -- --scenario x` hands the script the `--` too; parseArgs would take every
// flag after it as a positional argument.
if (import.meta.main) Deno.exit(await main(Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args));
