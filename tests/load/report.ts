/**
 * Plain-text rendering of a {@link LoadReport} and of the live progress line.
 * @module
 */
import type { LatencySummary } from "./latency.ts";
import type { LoadProgress, LoadReport } from "./runner.ts";

function ms(value: number): string {
  return Number.isNaN(value) ? "-" : value < 10 ? value.toFixed(2) : value.toFixed(1);
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}

function signed(value: number): string {
  return `${value >= 0 ? "+" : ""}${value.toFixed(1)}`;
}

function pct(value: number): string {
  return `${(value * 100).toFixed(2)}%`;
}

function latencyRow(name: string, s: LatencySummary, extra = ""): string {
  return [
    name.padEnd(26),
    String(s.count).padStart(8),
    ms(s.min).padStart(8),
    ms(s.avg).padStart(8),
    ms(s.p50).padStart(8),
    ms(s.p95).padStart(8),
    ms(s.p99).padStart(8),
    ms(s.max).padStart(9),
    extra,
  ].join(" ");
}

/** One progress line: scenario, elapsed, requests, rate, errors, p99 so far. */
export function formatProgress(p: LoadProgress): string {
  const errorRate = p.requests === 0 ? 0 : p.errors / p.requests;
  return `[${p.scenario}] ${(p.elapsedMs / 1000).toFixed(0).padStart(4)}s  ` +
    `reqs ${p.requests}  rate ${p.rate.toFixed(0)}/s  errors ${p.errors} (${pct(errorRate)})  ` +
    `p99 ${ms(p.p99)} ms`;
}

/** The final report as text. */
export function formatReport(r: LoadReport): string {
  const lines: string[] = [];
  const c = r.config;
  lines.push(
    `Scenario ${r.scenario} (${r.kind}) against ${r.baseUrl}`,
    `  concurrency ${c.concurrency}, duration ${c.durationMs / 1000} s, rate ${
      c.rate || "unpaced"
    }, max requests ${c.maxRequests ?? "-"}, keep-alive ${c.keepAlive}, timeout ${c.timeoutMs} ms`,
    `  ran ${(r.elapsedMs / 1000).toFixed(1)} s from ${r.startedAt}`,
    "",
    `Totals: ${r.totals.requests} requests, ${r.totals.ok} ok (${pct(r.totals.successRate)}), ` +
      `${r.totals.errors} errors (${pct(r.totals.errorRate)}), ` +
      `${r.totals.throughputPerSecond.toFixed(1)} req/s`,
    "",
    `${"latency (ms)".padEnd(26)} ${"count".padStart(8)} ${"min".padStart(8)} ${
      "avg".padStart(8)
    } ${"p50".padStart(8)} ${"p95".padStart(8)} ${"p99".padStart(8)} ${"max".padStart(9)} errors`,
    latencyRow("all", r.latency, `${r.totals.errors}`),
  );
  for (const [kind, k] of Object.entries(r.byKind)) {
    lines.push(latencyRow(`  ${kind}`, k.latency, `${k.errors} (${pct(k.errorRate)})`));
  }
  if (r.websocket) {
    lines.push(latencyRow("  ws.fanout (send→other)", r.websocket.fanout));
  }
  lines.push("", `Status codes: ${JSON.stringify(r.statusCodes)}`);
  lines.push(`Errors by kind: ${JSON.stringify(r.errorsByKind)}`);
  if (r.rateLimit) {
    const l = r.rateLimit;
    lines.push(
      "",
      `Rate limit: ${l.limited} × 429 (Retry-After on ${l.limitedWithRetryAfter}, ` +
        `RateLimit-Policy on ${l.limitedWithPolicy}, RateLimit on ${l.limitedWithRateLimit}; ` +
        `Retry-After ${l.retryAfterMin}..${l.retryAfterMax} s), first after ${
          ms(l.firstLimitedAtMs)
        } ms`,
      `  accepted ${l.accepted} (${
        l.acceptedPerSecond.toFixed(1)
      }/s, headers on ${l.acceptedWithHeaders}); policies ${l.policies.join(", ")}`,
    );
  }
  if (r.websocket) {
    const w = r.websocket;
    lines.push(
      "",
      `WebSocket: ${w.sockets} sockets on ${w.documents} documents; ops sent ${w.opsSent}, acked ${w.opsAcked}; ` +
        `deliveries ${w.deliveries}/${w.deliveriesExpected} expected (${
          w.deliveriesPerSecond.toFixed(0)
        }/s); server closes ${JSON.stringify(w.closes)}`,
    );
  }
  if (r.memory) {
    const m = r.memory;
    lines.push(
      "",
      `Gateway RSS (pid ${m.pid}): start ${mib(m.rssStartBytes)}, warm (20% in) ${
        mib(m.rssWarmBytes)
      }, end ${mib(m.rssEndBytes)} MiB; growth ${signed(m.growthPercent)}% from start, ${
        signed(m.growthSinceWarmPercent)
      }% from warm`,
    );
  }
  return lines.join("\n");
}
