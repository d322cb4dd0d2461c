import assert from "node:assert/strict";
import {
  Bbr,
  BBR_BW_FILTER_ROUNDS,
  BBR_CWND_GAIN,
  BBR_DRAIN_GAIN,
  BBR_FULL_BW_GROWTH,
  BBR_FULL_BW_ROUNDS,
  BBR_HIGH_GAIN,
  BBR_INITIAL_CWND_PACKETS,
  BBR_MIN_CWND_PACKETS,
  BBR_MIN_RTT_WINDOW_MS,
  BBR_PACING_GAIN_CYCLE,
  BBR_PACING_MARGIN,
  BBR_PROBE_RTT_DURATION_MS,
  type BbrMode,
  createBbr,
  WindowedMaxFilter,
} from "./bbr.ts";
import type { CongestionControllerFactory, SentPacket } from "./congestion.ts";

const MSS = 1000;

// ---------------------------------------------------------------------------------------------
// A small discrete-event path: one FIFO bottleneck of `rate` bytes/s, a fixed propagation RTT,
// an ACK per packet, optional drops (detected after 3 later packets are acked) and an optional
// application rate (app-limited sender). Everything runs on virtual time: no sleeps.
// ---------------------------------------------------------------------------------------------

interface PathOptions {
  /** Bottleneck rate, bytes per second. */
  rate: number | ((now: number) => number);
  /** Propagation round-trip time, ms. */
  rtt: number;
  /** Application data rate, bytes per second (default: always has data). */
  appRate?: number;
  /** Drops this packet number at the bottleneck. */
  drop?: (packetNumber: number) => boolean;
  /** Called after every ACK is processed. */
  onAck?: (now: number, bbr: Bbr, inflight: number) => void;
}

interface Flight extends SentPacket {
  ackAt: number;
  dropped: boolean;
}

interface PathResult {
  modes: Array<{ at: number; mode: BbrMode }>;
  deliveredBytes: number;
  end: number;
}

class Path {
  readonly bbr: Bbr;
  readonly opts: PathOptions;
  now = 0;
  inflight = 0;
  nextPn = 0;
  linkFree = 0;
  nextPace = 0;
  sentBytes = 0;
  delivered = 0;
  minRtt = Infinity;
  appLimitedSignalled = false;
  flights: Flight[] = [];
  modes: Array<{ at: number; mode: BbrMode }> = [];

  constructor(bbr: Bbr, opts: PathOptions) {
    this.bbr = bbr;
    this.opts = opts;
    this.modes.push({ at: 0, mode: bbr.mode });
  }

  rateAt(now: number): number {
    const { rate } = this.opts;
    return typeof rate === "number" ? rate : rate(now);
  }

  run(until: number): PathResult {
    for (;;) {
      const nextAck = this.flights.find((f) => !f.dropped)?.ackAt ?? Infinity;
      const cwndRoom = this.inflight + MSS <= this.bbr.congestionWindow();
      let dataReady = 0;
      if (this.opts.appRate !== undefined) {
        dataReady = ((this.sentBytes + MSS) * 1000) / this.opts.appRate;
      }
      const sendAt = cwndRoom ? Math.max(this.nextPace, dataReady, this.now) : Infinity;
      if (cwndRoom && dataReady > this.now && !this.appLimitedSignalled) {
        this.bbr.onAppLimited(this.now, this.inflight);
        this.appLimitedSignalled = true;
      }
      const t = Math.min(nextAck, sendAt);
      if (t > until || t === Infinity) break;
      this.now = t;
      if (nextAck <= sendAt) this.#ack();
      else this.#send();
    }
    return { modes: this.modes, deliveredBytes: this.delivered, end: this.now };
  }

  #send(): void {
    const packet: Flight = {
      packetNumber: this.nextPn++,
      bytes: MSS,
      sentAt: this.now,
      ackAt: 0,
      dropped: this.opts.drop?.(this.nextPn - 1) ?? false,
    };
    if (!packet.dropped) {
      const departure = Math.max(this.now, this.linkFree) + (MSS * 1000) / this.rateAt(this.now);
      this.linkFree = departure;
      packet.ackAt = departure + this.opts.rtt;
    }
    this.inflight += MSS;
    this.sentBytes += MSS;
    this.appLimitedSignalled = false;
    this.flights.push(packet);
    this.bbr.onPacketSent(this.now, packet, this.inflight, false);
    const pacing = this.bbr.pacingRate();
    this.nextPace = this.now + (MSS / pacing) * 1000;
  }

  #ack(): void {
    const index = this.flights.findIndex((f) => !f.dropped);
    const packet = this.flights[index]!;
    this.flights.splice(index, 1);
    const prior = this.inflight;
    this.inflight -= MSS;
    this.delivered += MSS;
    // Dropped packets with 3 or more acked packets above them are declared lost.
    const lost: Flight[] = [];
    this.flights = this.flights.filter((f) => {
      if (f.dropped && f.packetNumber + 3 <= packet.packetNumber) {
        lost.push(f);
        return false;
      }
      return true;
    });
    this.inflight -= lost.length * MSS;
    const rttSample = this.now - packet.sentAt;
    this.minRtt = Math.min(this.minRtt, rttSample);
    this.bbr.onAck({
      now: this.now,
      acked: [packet],
      lost,
      rttSample,
      minRtt: this.minRtt,
      priorBytesInFlight: prior,
      bytesInFlight: this.inflight,
    });
    const last = this.modes[this.modes.length - 1]!;
    if (last.mode !== this.bbr.mode) this.modes.push({ at: this.now, mode: this.bbr.mode });
    this.opts.onAck?.(this.now, this.bbr, this.inflight);
  }
}

function modeSequence(result: PathResult): BbrMode[] {
  return result.modes.map((m) => m.mode);
}

/** Manual driver: send `count` packets now, returns them. */
function sendBurst(
  bbr: Bbr,
  now: number,
  first: number,
  count: number,
  inflight: number,
): SentPacket[] {
  const packets: SentPacket[] = [];
  for (let i = 0; i < count; i++) {
    const packet = { packetNumber: first + i, bytes: MSS, sentAt: now };
    packets.push(packet);
    bbr.onPacketSent(now, packet, inflight + (i + 1) * MSS, false);
  }
  return packets;
}

// ---------------------------------------------------------------------------------------------

Deno.test("BBR constants match tcp_bbr.c and the draft", () => {
  assert.ok(Math.abs(BBR_HIGH_GAIN - 2.885) < 0.001);
  assert.equal(BBR_HIGH_GAIN, 2 / Math.LN2);
  assert.ok(Math.abs(BBR_DRAIN_GAIN * BBR_HIGH_GAIN - 1) < 1e-12);
  assert.equal(BBR_CWND_GAIN, 2);
  assert.deepEqual([...BBR_PACING_GAIN_CYCLE], [1.25, 0.75, 1, 1, 1, 1, 1, 1]);
  assert.ok(Object.isFrozen(BBR_PACING_GAIN_CYCLE));
  assert.equal(BBR_BW_FILTER_ROUNDS, 10);
  assert.equal(BBR_MIN_RTT_WINDOW_MS, 10_000);
  assert.equal(BBR_PROBE_RTT_DURATION_MS, 200);
  assert.equal(BBR_MIN_CWND_PACKETS, 4);
  assert.equal(BBR_INITIAL_CWND_PACKETS, 10);
  assert.equal(BBR_FULL_BW_GROWTH, 1.25);
  assert.equal(BBR_FULL_BW_ROUNDS, 3);
  assert.equal(BBR_PACING_MARGIN, 0.01);
});

Deno.test("createBbr() is a CongestionControllerFactory starting in STARTUP with high gains", () => {
  const factory: CongestionControllerFactory = createBbr;
  const cc = factory({ mss: MSS, now: 0 });
  assert.equal(cc.name, "bbr");
  assert.ok(cc instanceof Bbr);
  const state = cc.state();
  assert.equal(state.mode, "startup");
  assert.equal(state.pacingGain, BBR_HIGH_GAIN);
  assert.equal(state.cwndGain, BBR_HIGH_GAIN);
  assert.equal(cc.congestionWindow(), BBR_INITIAL_CWND_PACKETS * MSS);
  // No RTT yet: 10 packets per assumed 1 ms, times the high gain, 1% below.
  assert.ok(Math.abs(cc.pacingRate() - 10 * MSS * 1000 * BBR_HIGH_GAIN * 0.99) < 1e-6);
  assert.equal(state.bandwidth, 0);
  assert.equal(state.minRtt, Infinity);
  assert.throws(() => createBbr({ mss: 0, now: 0 }), RangeError);
  assert.throws(() => createBbr({ mss: MSS, now: Number.NaN }), RangeError);
});

Deno.test("STARTUP doubles per round, detects the full pipe, DRAINs, then enters PROBE_BW", () => {
  const bbr = createBbr({ mss: MSS, now: 0, random: () => 0 });
  const rate = 1_000_000; // 1 MB/s, BDP at 20 ms = 20 kB
  let fullPipeRound = -1;
  let drainExit: { inflight: number; bdp: number } | undefined;
  let lastMode: BbrMode = "startup";
  const path = new Path(bbr, {
    rate,
    rtt: 20,
    onAck: (_now, b, inflight) => {
      const s = b.state();
      if (s.fullBandwidthReached && fullPipeRound < 0) fullPipeRound = s.roundCount;
      if (lastMode === "drain" && s.mode === "probe_bw") {
        drainExit = { inflight, bdp: (s.bandwidth * s.minRtt) / 1000 };
      }
      if (s.mode === "drain") {
        assert.equal(s.pacingGain, BBR_DRAIN_GAIN);
        assert.equal(s.cwndGain, BBR_HIGH_GAIN);
      }
      lastMode = s.mode;
    },
  });
  const result = path.run(2000);
  assert.deepEqual(modeSequence(result).slice(0, 3), ["startup", "drain", "probe_bw"]);
  const state = bbr.state();
  assert.equal(state.fullBandwidthReached, true);
  assert.ok(fullPipeRound >= BBR_FULL_BW_ROUNDS + 1, `full pipe at round ${fullPipeRound}`);
  // Bandwidth estimate converges on the bottleneck rate.
  assert.ok(Math.abs(state.bandwidth - rate) / rate < 0.05, `bw ${state.bandwidth}`);
  assert.ok(Math.abs(state.minRtt - 21) < 0.01, `minRtt ${state.minRtt}`);
  // DRAIN exits only once inflight is at most one BDP (+ the quantization budget).
  assert.ok(drainExit !== undefined);
  assert.ok(drainExit.inflight <= drainExit.bdp + 6 * MSS, JSON.stringify(drainExit));
  // In PROBE_BW the cwnd gain is 2 and the window tracks 2 × BDP (+ budget).
  assert.equal(state.mode, "probe_bw");
  assert.equal(state.cwndGain, BBR_CWND_GAIN);
  const bdp = (state.bandwidth * state.minRtt) / 1000;
  assert.ok(state.congestionWindow >= 2 * bdp, `cwnd ${state.congestionWindow} bdp ${bdp}`);
  assert.ok(state.congestionWindow <= 2 * bdp + 9 * MSS, `cwnd ${state.congestionWindow}`);
  // Goodput over the run is close to the link rate despite starting from 10 packets.
  assert.ok(result.deliveredBytes > 0.85 * rate * 2, `delivered ${result.deliveredBytes}`);
});

Deno.test("STARTUP's bandwidth growth: the estimate at least doubles per round early on", () => {
  const bbr = createBbr({ mss: MSS, now: 0 });
  const perRound: number[] = [];
  const path = new Path(bbr, {
    rate: 50_000_000, // fat pipe: STARTUP keeps growing for a while
    rtt: 20,
    onAck: (_n, b) => {
      const s = b.state();
      perRound[s.roundCount] = s.bandwidth;
    },
  });
  path.run(150);
  // Rounds 2..4 (after the first sample) grow by at least 1.9x each.
  for (let r = 3; r <= 5; r++) {
    const prev = perRound[r - 1]!;
    const cur = perRound[r]!;
    assert.ok(cur >= 1.9 * prev, `round ${r}: ${prev} -> ${cur}`);
  }
  assert.equal(bbr.mode, "startup");
});

Deno.test("PROBE_BW cycles through all 8 gains, one phase per min RTT", () => {
  const bbr = createBbr({ mss: MSS, now: 0, random: () => 0.5 });
  const seen: Array<{ at: number; index: number; gain: number }> = [];
  const path = new Path(bbr, {
    rate: 1_000_000,
    rtt: 20,
    onAck: (now, b) => {
      const s = b.state();
      if (s.mode !== "probe_bw") return;
      const last = seen[seen.length - 1];
      if (last === undefined || last.index !== s.cycleIndex) {
        seen.push({ at: now, index: s.cycleIndex, gain: s.pacingGain });
      }
    },
  });
  path.run(3000);
  assert.ok(seen.length > 16, `phases seen: ${seen.length}`);
  for (let i = 1; i < seen.length; i++) {
    const a = seen[i - 1]!;
    const b = seen[i]!;
    assert.equal(b.index, (a.index + 1) % 8, "phases advance in order");
    assert.equal(b.gain, BBR_PACING_GAIN_CYCLE[b.index]);
    // Each phase lasts at least one min RTT (the probe phase may last longer).
    assert.ok(b.at - a.at > 20, `phase ${a.index} lasted ${b.at - a.at} ms`);
  }
  assert.deepEqual(new Set(seen.map((s) => s.index)), new Set([0, 1, 2, 3, 4, 5, 6, 7]));
  // Pacing follows the phase's gain: in a gain-1 phase the rate is bw × 0.99.
  const s = bbr.state();
  assert.ok(
    Math.abs(s.pacingRate - s.bandwidth * s.pacingGain * 0.99) < 1e-6,
    JSON.stringify(s),
  );
});

Deno.test("PROBE_BW starts at a random phase, never the 0.75 drain phase", () => {
  const starts = new Set<number>();
  for (const r of [0, 0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.86, 0.9999, 1 - 1e-12]) {
    const bbr = createBbr({ mss: MSS, now: 0, random: () => r });
    let start: number | undefined;
    new Path(bbr, {
      rate: 1_000_000,
      rtt: 20,
      onAck: (_n, b) => {
        const s = b.state();
        if (start === undefined && s.mode === "probe_bw") start = s.cycleIndex;
      },
    }).run(600);
    assert.ok(start !== undefined, `PROBE_BW not reached for r=${r}`);
    assert.notEqual(start, 1, `r=${r} started in the 0.75 phase`);
    starts.add(start);
  }
  // The 7 possible starts are 0 and 2..7; the inputs above reach all of them.
  assert.deepEqual([...starts].sort(), [0, 2, 3, 4, 5, 6, 7]);
});

Deno.test("PROBE_RTT: entered after 10 s without a lower RTT, cwnd 4 packets for >= 200 ms and a round", () => {
  const bbr = createBbr({ mss: MSS, now: 0, random: () => 0 });
  let enteredAt: number | undefined;
  let cwndBefore = 0;
  let lastCwnd = 0;
  let floorSince: number | undefined;
  let exitedAt: number | undefined;
  let exitCwnd = 0;
  let maxCwndInProbeRtt = 0;
  const path = new Path(bbr, {
    rate: 1_000_000,
    rtt: 20,
    onAck: (now, b, inflight) => {
      const s = b.state();
      if (s.mode === "probe_rtt") {
        if (enteredAt === undefined) {
          enteredAt = now;
          cwndBefore = lastCwnd;
          assert.equal(s.pacingGain, 1);
          assert.equal(s.cwndGain, 1);
        }
        maxCwndInProbeRtt = Math.max(maxCwndInProbeRtt, s.congestionWindow);
        if (floorSince === undefined && inflight <= 4 * MSS) floorSince = now;
      } else if (enteredAt !== undefined && exitedAt === undefined) {
        exitedAt = now;
        exitCwnd = s.congestionWindow;
      }
      lastCwnd = s.congestionWindow;
    },
  });
  path.run(10_600);
  assert.ok(enteredAt !== undefined, "PROBE_RTT never entered");
  // The min RTT sample was taken in the first round trips; expiry is 10 s after it.
  assert.ok(enteredAt > BBR_MIN_RTT_WINDOW_MS && enteredAt < BBR_MIN_RTT_WINDOW_MS + 100);
  assert.equal(maxCwndInProbeRtt, BBR_MIN_CWND_PACKETS * MSS);
  assert.ok(floorSince !== undefined && exitedAt !== undefined);
  assert.ok(exitedAt - floorSince >= BBR_PROBE_RTT_DURATION_MS, `${exitedAt - floorSince} ms`);
  assert.ok(exitedAt - floorSince < BBR_PROBE_RTT_DURATION_MS + 50);
  // Back to PROBE_BW (the pipe was full) with the window saved before PROBE_RTT.
  assert.equal(bbr.mode, "probe_bw");
  assert.ok(exitCwnd >= cwndBefore, `cwnd ${exitCwnd} < saved ${cwndBefore}`);
  const modes = modeSequence({ modes: path.modes, deliveredBytes: 0, end: 0 });
  assert.deepEqual(modes.slice(-2), ["probe_rtt", "probe_bw"]);
});

Deno.test("PROBE_RTT needs a full round even after 200 ms when the RTT is long", () => {
  const bbr = createBbr({ mss: MSS, now: 0, random: () => 0 });
  let floorSince: number | undefined;
  let exitedAt: number | undefined;
  let entered = false;
  new Path(bbr, {
    rate: 200_000,
    rtt: 300, // one round (~300 ms) outlasts the 200 ms minimum
    onAck: (now, b, inflight) => {
      if (b.mode === "probe_rtt") {
        entered = true;
        if (floorSince === undefined && inflight <= 4 * MSS) floorSince = now;
      } else if (entered && exitedAt === undefined) exitedAt = now;
    },
  }).run(12_000);
  assert.ok(floorSince !== undefined && exitedAt !== undefined);
  assert.ok(exitedAt - floorSince >= 300, `left after ${exitedAt - floorSince} ms`);
});

Deno.test("PROBE_RTT returns to STARTUP when the pipe was never full (app-limited sender)", () => {
  const bbr = createBbr({ mss: MSS, now: 0 });
  // 1 MB/s of data on an 8 MB/s path: never idle, always app-limited. (Rates chosen so the
  // virtual times are exact binary fractions: no float jitter refreshes the min RTT.)
  const path = new Path(bbr, { rate: 8_000_000, rtt: 10, appRate: 1_000_000 });
  const result = path.run(10_500);
  assert.equal(bbr.state().fullBandwidthReached, false);
  assert.deepEqual(modeSequence(result), ["startup", "probe_rtt", "startup"]);
});

Deno.test("a lower RTT sample refreshes the min RTT and postpones PROBE_RTT", () => {
  const bbr = createBbr({ mss: MSS, now: 0 });
  let now = 0;
  let pn = 0;
  let rtt = 20;
  for (let i = 0; i < 19; i++) {
    const [p] = sendBurst(bbr, now, pn++, 1, 0);
    now += rtt;
    bbr.onAck({
      now,
      acked: [p!],
      lost: [],
      rttSample: rtt,
      minRtt: 20,
      priorBytesInFlight: MSS,
      bytesInFlight: 0,
    });
    // Every ~1 s the RTT dips a little, refreshing the filter.
    rtt = i % 2 === 0 ? 19.9 - i * 0.01 : 20;
    now += 1000 - rtt;
  }
  assert.ok(now > 2 * BBR_MIN_RTT_WINDOW_MS - 2000);
  assert.notEqual(bbr.mode, "probe_rtt");
  assert.ok(bbr.state().minRtt < 20);
});

Deno.test("the bandwidth max filter forgets a rate after 10 round trips", () => {
  let rate = 2_000_000;
  const bbr = createBbr({ mss: MSS, now: 0 });
  let dropRound = -1;
  let recoveredRound = -1;
  new Path(bbr, {
    rate: () => rate,
    rtt: 20,
    onAck: (now, b) => {
      const s = b.state();
      if (now > 1500 && dropRound < 0) {
        rate = 500_000;
        dropRound = s.roundCount;
      }
      if (dropRound >= 0 && recoveredRound < 0 && s.bandwidth < 600_000) {
        recoveredRound = s.roundCount;
      }
    },
  }).run(4000);
  assert.ok(recoveredRound > 0, "estimate never dropped");
  const rounds = recoveredRound - dropRound;
  assert.ok(rounds >= BBR_BW_FILTER_ROUNDS && rounds <= BBR_BW_FILTER_ROUNDS + 4, `${rounds}`);
});

Deno.test("app-limited samples are ignored unless they exceed the current max", () => {
  const bbr = createBbr({ mss: MSS, now: 0 });
  // Round trips of 10 ms; one packet per round, non-app-limited: 1000 B / 10 ms = 100 kB/s.
  let now = 0;
  let pn = 0;
  function round(appLimited: boolean, packets: number, rtt: number): void {
    if (appLimited) bbr.onAppLimited(now, 0);
    const sent = sendBurst(bbr, now, pn, packets, 0);
    pn += packets;
    now += rtt;
    bbr.onAck({
      now,
      acked: sent,
      lost: [],
      rttSample: rtt,
      minRtt: 10,
      priorBytesInFlight: packets * MSS,
      bytesInFlight: 0,
    });
  }
  for (let i = 0; i < 3; i++) round(false, 10, 10); // 1 MB/s
  const high = bbr.state().bandwidth;
  assert.ok(Math.abs(high - 1_000_000) < 1);
  // 15 app-limited rounds at 100 kB/s: ignored, so the max does not even expire.
  for (let i = 0; i < 15; i++) round(true, 1, 10);
  assert.equal(bbr.state().bandwidth, high);
  // An app-limited sample above the max is taken.
  round(true, 20, 10);
  assert.ok(Math.abs(bbr.state().bandwidth - 2_000_000) < 1);
  // Non-app-limited low samples replace the max once it is 10 rounds old.
  for (let i = 0; i < 12; i++) round(false, 1, 10);
  assert.ok(Math.abs(bbr.state().bandwidth - 100_000) < 1, `${bbr.state().bandwidth}`);
});

Deno.test("DRAIN exits as soon as inflight falls to one BDP", () => {
  const bbr = createBbr({ mss: MSS, now: 0 });
  let now = 0;
  let pn = 0;
  // Flat bandwidth (1 MB/s at 10 ms RTT): 10 packets per round, ACKed together.
  for (let r = 0; r < 8 && bbr.mode === "startup"; r++) {
    const sent = sendBurst(bbr, now, pn, 10, 30 * MSS);
    pn += 10;
    now += 10;
    bbr.onAck({
      now,
      acked: sent,
      lost: [],
      rttSample: 10,
      minRtt: 10,
      priorBytesInFlight: 40 * MSS,
      bytesInFlight: 30 * MSS, // a standing queue: inflight stays above the BDP
    });
  }
  assert.equal(bbr.mode, "drain");
  assert.equal(bbr.state().pacingGain, BBR_DRAIN_GAIN);
  // Still above BDP (10 kB) + budget: stays in DRAIN.
  const more = sendBurst(bbr, now, pn, 10, 30 * MSS);
  pn += 10;
  now += 10;
  bbr.onAck({
    now,
    acked: more.slice(0, 5),
    lost: [],
    rttSample: 10,
    minRtt: 10,
    priorBytesInFlight: 40 * MSS,
    bytesInFlight: 35 * MSS,
  });
  assert.equal(bbr.mode, "drain");
  now += 1;
  bbr.onAck({
    now,
    acked: more.slice(5),
    lost: [],
    rttSample: 11,
    minRtt: 10,
    priorBytesInFlight: 35 * MSS,
    bytesInFlight: 10 * MSS,
  });
  assert.equal(bbr.mode, "probe_bw");
});

Deno.test("STARTUP does not declare a full pipe on app-limited rounds", () => {
  const bbr = createBbr({ mss: MSS, now: 0 });
  let now = 0;
  let pn = 0;
  for (let r = 0; r < 10; r++) {
    bbr.onAppLimited(now, 0);
    const sent = sendBurst(bbr, now, pn, 2, 0);
    pn += 2;
    now += 10;
    bbr.onAck({
      now,
      acked: sent,
      lost: [],
      rttSample: 10,
      minRtt: 10,
      priorBytesInFlight: 2 * MSS,
      bytesInFlight: 0,
    });
  }
  assert.equal(bbr.state().fullBandwidthReached, false);
  assert.equal(bbr.mode, "startup");
});

Deno.test("losses shrink cwnd, packet conservation holds for a round, cwnd is restored after", () => {
  const bbr = createBbr({ mss: MSS, now: 0, random: () => 0 });
  const path = new Path(bbr, { rate: 1_000_000, rtt: 20 });
  path.run(1000);
  assert.equal(bbr.mode, "probe_bw");
  const before = bbr.congestionWindow();
  // Drop 3 packets in one window.
  const first = path.nextPn + 2;
  const dropped = new Set([first, first + 1, first + 2]);
  let minDuring = Infinity;
  let sawRecovery = false;
  path.opts.drop = (pn) => dropped.has(pn);
  path.opts.onAck = (_now, b, inflight) => {
    const s = b.state();
    if (s.inRecovery) {
      sawRecovery = true;
      minDuring = Math.min(minDuring, s.congestionWindow);
      assert.ok(s.congestionWindow >= BBR_MIN_CWND_PACKETS * MSS);
      assert.ok(s.congestionWindow >= inflight, "conservation: cwnd >= inflight");
    }
  };
  path.run(1300);
  assert.ok(sawRecovery);
  assert.ok(minDuring < before, `cwnd ${minDuring} not reduced from ${before}`);
  assert.equal(bbr.state().inRecovery, false);
  assert.ok(bbr.congestionWindow() >= before - 2 * MSS, `${bbr.congestionWindow()} vs ${before}`);
});

Deno.test("random loss does not cut cwnd below one BDP once the pipe is measured", () => {
  const rate = 1_000_000;
  const rtt = 20;
  const bbr = createBbr({ mss: MSS, now: 0, random: () => 0 });
  let minCwnd = Infinity;
  let deliveredAt1s = 0;
  const path = new Path(bbr, {
    rate,
    rtt,
    drop: (pn) => pn % 20 === 7, // 5% random-like loss, not congestion
    onAck: (now, b) => {
      if (now < 1000) deliveredAt1s = path.delivered;
      else minCwnd = Math.min(minCwnd, b.congestionWindow());
    },
  });
  const result = path.run(3000);
  const bdp = (rate * rtt) / 1000;
  assert.ok(minCwnd >= bdp, `min cwnd ${minCwnd} < BDP ${bdp}`);
  const goodput = ((result.deliveredBytes - deliveredAt1s) * 1000) / 2000;
  assert.ok(goodput >= 0.85 * rate, `goodput ${goodput} B/s at 5% loss`);
});

Deno.test("cwnd never falls below 4 packets, even under heavy loss", () => {
  const bbr = createBbr({ mss: MSS, now: 0 });
  let min = Infinity;
  let counter = 0;
  new Path(bbr, {
    rate: 1_000_000,
    rtt: 20,
    drop: () => (counter++ % 3) === 0, // 33% loss
    onAck: (_n, b) => (min = Math.min(min, b.congestionWindow())),
  }).run(2000);
  assert.ok(min >= BBR_MIN_CWND_PACKETS * MSS, `min cwnd ${min}`);
});

Deno.test("persistent congestion drops cwnd to the floor and restores the saved cwnd once new data is acked", () => {
  const bbr = createBbr({ mss: MSS, now: 0, random: () => 0 });
  const path = new Path(bbr, { rate: 1_000_000, rtt: 20 });
  path.run(1000);
  const before = bbr.congestionWindow();
  assert.ok(before > 10 * MSS);
  bbr.onPersistentCongestion(1000);
  assert.equal(bbr.congestionWindow(), BBR_MIN_CWND_PACKETS * MSS);
  assert.equal(bbr.state().inRecovery, true);
  // An ACK for a packet sent before the RTO does not end the loss state.
  const old = { packetNumber: 1_000_000, bytes: MSS, sentAt: 990 };
  bbr.onPacketSent(990, old, 40 * MSS, false);
  bbr.onAck({
    now: 1001,
    acked: [old],
    lost: [],
    minRtt: 20,
    priorBytesInFlight: MSS,
    bytesInFlight: 0,
  });
  assert.equal(bbr.state().inRecovery, true);
  const fresh = { packetNumber: 1_000_001, bytes: MSS, sentAt: 1002 };
  bbr.onPacketSent(1002, fresh, MSS, true);
  bbr.onAck({
    now: 1023,
    acked: [fresh],
    lost: [],
    rttSample: 21,
    minRtt: 20,
    priorBytesInFlight: MSS,
    bytesInFlight: 0,
  });
  assert.equal(bbr.state().inRecovery, false);
  assert.ok(bbr.congestionWindow() >= before);
});

Deno.test("restarting from idle in PROBE_BW paces at the estimated bandwidth (gain 1)", () => {
  const bbr = createBbr({ mss: MSS, now: 0, random: () => 0 }); // first phase: 1.25
  const path = new Path(bbr, { rate: 1_000_000, rtt: 20 });
  path.run(600);
  assert.equal(bbr.mode, "probe_bw");
  // Drain everything, go idle.
  path.opts.appRate = 1; // effectively no new data
  path.run(path.now + 200);
  assert.equal(path.inflight, 0);
  const bw = bbr.state().bandwidth;
  bbr.onPacketSent(path.now + 100, { packetNumber: 99_999, bytes: MSS, sentAt: 0 }, MSS, false);
  assert.ok(Math.abs(bbr.pacingRate() - bw * 0.99) < 1e-6, `${bbr.pacingRate()} vs ${bw}`);
});

Deno.test("WindowedMaxFilter keeps the max of the window and expires old maxima", () => {
  const f = new WindowedMaxFilter(10);
  assert.equal(f.update(0, 5), 5);
  assert.equal(f.update(1, 3), 5);
  assert.equal(f.update(4, 4), 5);
  assert.equal(f.update(9, 2), 5);
  // At t=11 the 5 (t=0) is out of the window; best of the rest is 4 (t=4).
  assert.equal(f.update(11, 1), 4);
  // At t=15 the 4 (t=4) is 11 rounds old: out; the 2 (t=9) is the best left.
  assert.equal(f.update(15, 1), 2);
  assert.equal(f.update(16, 0), 2);
  assert.equal(f.update(17, 9), 9);
  assert.equal(f.reset(0, 1), 1);
  assert.equal(f.best, 1);
  assert.throws(() => new WindowedMaxFilter(0), RangeError);
});

Deno.test("WindowedMaxFilter matches a brute-force windowed max on a random series (within the algorithm's guarantees)", () => {
  // Nichols' filter is exact for the best value whenever samples are monotone in time and the
  // true max is the newest such value, and never reports a value older than the window.
  let seed = 42;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const f = new WindowedMaxFilter(10);
  const series: Array<[number, number]> = [];
  for (let t = 0; t < 500; t++) {
    const v = Math.floor(rnd() * 1000);
    series.push([t, v]);
    const best = f.update(t, v);
    const inWindow = series.filter(([st]) => t - st <= 10).map(([, sv]) => sv);
    // Never more than the true window max; never less than the current sample.
    assert.ok(best <= Math.max(...inWindow), `t=${t}`);
    assert.ok(best >= v);
    // The reported value is one of the samples seen in the last window.
    assert.ok(inWindow.includes(best), `t=${t} best ${best} is stale`);
  }
});

// Microbenchmark: `deno bench -A quantum/bbr_test.ts` (ignored by `deno test`).
{
  const bbr = createBbr({ mss: MSS, now: 0 });
  let pn = 0;
  let now = 0;
  const inflight: SentPacket[] = [];
  Deno.bench("BBR: onPacketSent + onAck per packet (steady state, 50 in flight)", () => {
    const packet = { packetNumber: pn++, bytes: MSS, sentAt: now };
    inflight.push(packet);
    bbr.onPacketSent(now, packet, inflight.length * MSS, false);
    now += 0.1;
    if (inflight.length > 50) {
      const acked = inflight.shift()!;
      bbr.onAck({
        now,
        acked: [acked],
        lost: [],
        rttSample: now - acked.sentAt,
        minRtt: 5,
        priorBytesInFlight: (inflight.length + 1) * MSS,
        bytesInFlight: inflight.length * MSS,
      });
    }
  });
}
