/**
 * The background expiry sweeper: every `intervalMs` it asks the manager to delete sessions
 * whose expiry has passed. Reads never depend on it (every read checks the expiry); it only
 * reclaims space. Runs never overlap, and `stop()` waits for a run in progress.
 *
 * @example
 * ```ts
 * const sweeper = startSweeper(manager, { intervalMs: 30_000 });
 * await sweeper.stop();
 * ```
 * @module
 */
import { type Logger, silentLogger } from "../kernel/mod.ts";

/** What the sweeper needs from a manager. */
export interface Sweepable {
  /** Delete up to `limit` expired sessions; resolves to how many. */
  sweep(limit?: number): Promise<number>;
}

/** Options for {@link startSweeper}. */
export interface SweeperOptions {
  /** Time between runs, ms (≥ 1). */
  intervalMs: number;
  /** Sessions deleted per batch; a run repeats batches while they come back full (default 500). */
  batchSize?: number;
  /** Where failures are logged (a failed run is retried at the next tick). */
  logger?: Logger;
  /** Called after each run with how many sessions were removed. */
  onSweep?: (removed: number) => void;
}

/** A running sweeper. */
export interface Sweeper extends AsyncDisposable {
  /** Stop the timer and wait for a run in progress. */
  stop(): Promise<void>;
}

/**
 * Start sweeping on an interval.
 * @throws {RangeError} when `intervalMs` is not a positive number
 */
export function startSweeper(target: Sweepable, options: SweeperOptions): Sweeper {
  if (!(options.intervalMs >= 1)) throw new RangeError("Invalid intervalMs: must be >= 1");
  const batchSize = options.batchSize ?? 500;
  const logger = options.logger ?? silentLogger;
  let running: Promise<void> | null = null;
  let stopped = false;
  const run = async () => {
    let removed = 0;
    try {
      while (!stopped) {
        const batch = await target.sweep(batchSize);
        removed += batch;
        if (batch < batchSize) break;
      }
      if (removed > 0) logger.info("Expired sessions swept", { removed });
    } catch (error) {
      logger.error("Session sweep failed", { error });
    }
    options.onSweep?.(removed);
  };
  const timer = setInterval(() => {
    if (running !== null || stopped) return;
    running = run().finally(() => running = null);
  }, options.intervalMs);
  const stop = async () => {
    stopped = true;
    clearInterval(timer);
    if (running !== null) await running;
  };
  return { stop, [Symbol.asyncDispose]: stop };
}
