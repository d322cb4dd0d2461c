/**
 * Test helper: run `statesync/main.ts` as a child process and watch its log lines.
 * @module
 */
import { type DenoChild, spawnDeno } from "../kernel/testing.ts";

/** Start `main.ts` with `env` (info logs on stderr, watched by the returned `log`). */
export function startMain(env: Record<string, string>): DenoChild {
  return spawnDeno(new URL("./main.ts", import.meta.url), {
    env: { AETHERFLOW_STATESYNC_LOG_LEVEL: "info", ...env },
  });
}
