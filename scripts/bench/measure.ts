// What the benchmark measures and how: load generators (closed loop for
// saturation, open loop for fixed offered rates), latency histograms in
// microseconds, and CPU and memory of this process and of child processes.
import { readFileSync } from "node:fs";
import hdr from "hdr-histogram-js";

/** One request/reply (or publish/ack) of the system under test; resolves when answered. */
export type Call = () => Promise<unknown>;

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** A latency histogram in microseconds, from 1 µs to 2 minutes. */
export class Latencies {
  private readonly histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 120_000_000,
    numberOfSignificantValueDigits: 3,
  });

  recordMs(ms: number): void {
    this.histogram.recordValue(Math.max(1, Math.round(ms * 1_000)));
  }

  summary(): LatencySummary {
    const at = (p: number) => round3(this.histogram.getValueAtPercentile(p) / 1_000);
    return {
      count: this.histogram.totalCount,
      p50Ms: at(50),
      p95Ms: at(95),
      p99Ms: at(99),
      maxMs: round3(this.histogram.maxValue / 1_000),
    };
  }
}

export interface SaturationResult {
  ops: number;
  errors: number;
  elapsedMs: number;
  opsPerSec: number;
  latency: LatencySummary;
}

/**
 * Closed loop: `inFlight` callers each start a new call as soon as the last
 * one is answered, until `durationMs` passes or `maxOps` calls were made.
 */
export async function saturate(
  call: Call,
  opts: { inFlight: number; durationMs: number; maxOps?: number },
): Promise<SaturationResult> {
  const latencies = new Latencies();
  const started = performance.now();
  const deadline = started + opts.durationMs;
  const maxOps = opts.maxOps ?? Number.POSITIVE_INFINITY;
  let issued = 0;
  let ops = 0;
  let errors = 0;
  const worker = async () => {
    while (performance.now() < deadline && issued < maxOps) {
      issued++;
      const t0 = performance.now();
      try {
        await call();
        ops++;
        latencies.recordMs(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: opts.inFlight }, worker));
  const elapsedMs = performance.now() - started;
  return {
    ops,
    errors,
    elapsedMs,
    opsPerSec: (ops / elapsedMs) * 1_000,
    latency: latencies.summary(),
  };
}

export interface RateResult {
  offeredPerSec: number;
  achievedPerSec: number;
  ops: number;
  errors: number;
  /** Calls not started because `maxInFlight` were already waiting: the system fell behind. */
  shed: number;
  latency: LatencySummary;
}

/**
 * Open loop at a fixed offered rate. Latency is measured from when each call
 * was due, not when it was sent, so a stalled system is not excused by the
 * generator waiting for it (coordinated omission).
 */
export async function fixedRate(
  call: Call,
  opts: { ratePerSec: number; durationMs: number; maxInFlight: number; drainMs?: number },
): Promise<RateResult> {
  const latencies = new Latencies();
  const intervalMs = 1_000 / opts.ratePerSec;
  const total = Math.floor((opts.durationMs / 1_000) * opts.ratePerSec);
  const started = performance.now();
  let sent = 0;
  let inFlight = 0;
  let ops = 0;
  let errors = 0;
  let shed = 0;
  let lastDone = started;
  const fire = (dueAt: number) => {
    if (inFlight >= opts.maxInFlight) {
      shed++;
      return;
    }
    inFlight++;
    call()
      .then(
        () => {
          ops++;
          lastDone = performance.now();
          latencies.recordMs(lastDone - dueAt);
        },
        () => errors++,
      )
      .finally(() => inFlight--);
  };
  while (sent < total) {
    const due = Math.min(total, Math.floor((performance.now() - started) / intervalMs) + 1);
    for (; sent < due; sent++) fire(started + sent * intervalMs);
    await sleep(1);
  }
  const drainUntil = performance.now() + (opts.drainMs ?? 10_000);
  while (inFlight > 0 && performance.now() < drainUntil) await sleep(5);
  const elapsedMs = Math.max(opts.durationMs, lastDone - started);
  return {
    offeredPerSec: opts.ratePerSec,
    achievedPerSec: round3((ops / elapsedMs) * 1_000),
    ops,
    errors: errors + inFlight,
    shed,
    latency: latencies.summary(),
  };
}

/** CPU time of a process in microseconds (user + system), from /proc. */
export function processCpuMicros(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which may itself hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks / CLOCK_TICKS_PER_SEC) * 1_000_000;
  } catch {
    return Number.NaN;
  }
}

/** Linux's USER_HZ, the unit of utime and stime in /proc/<pid>/stat; 100 on every usual build. */
const CLOCK_TICKS_PER_SEC = 100;

/** Resident and peak resident memory of a process in MiB, from /proc. */
export function processMemoryMiB(pid: number): { rssMiB: number; peakRssMiB: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(status)?.[1]);
    return { rssMiB: round3(kib("VmRSS") / 1024), peakRssMiB: round3(kib("VmHWM") / 1024) };
  } catch {
    return { rssMiB: Number.NaN, peakRssMiB: Number.NaN };
  }
}

export interface CpuCost {
  /** CPU microseconds per message of this (the bench) process. */
  benchUsPerMsg: number;
  natsServerUsPerMsg: number;
  /** Of the broker child process, where there is one. */
  brokerUsPerMsg?: number;
}

/** Marks CPU counters at the start of a phase; `per(n)` divides what was spent since by `n`. */
export function cpuMeter(natsPid: number, brokerPid?: number) {
  const bench0 = process.cpuUsage();
  const nats0 = processCpuMicros(natsPid);
  const broker0 = brokerPid === undefined ? 0 : processCpuMicros(brokerPid);
  return {
    per(messages: number): CpuCost {
      const bench = process.cpuUsage(bench0);
      const n = Math.max(1, messages);
      const cost: CpuCost = {
        benchUsPerMsg: round3((bench.user + bench.system) / n),
        natsServerUsPerMsg: round3((processCpuMicros(natsPid) - nats0) / n),
      };
      if (brokerPid !== undefined) {
        cost.brokerUsPerMsg = round3((processCpuMicros(brokerPid) - broker0) / n);
      }
      return cost;
    },
  };
}

/** Payload of `bytes` printable ASCII characters, the same bytes for every system. */
export function payloadText(bytes: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  let out = "";
  for (let i = 0; i < bytes; i++) out += alphabet[(i * 7 + 3) % alphabet.length];
  return out;
}

export function round3(n: number): number {
  return Math.round(n * 1_000) / 1_000;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Messages and bytes a client connection exchanged with nats-server, from
 * its /connz: `in` is what the client published, `out` what it received.
 */
export interface ConnTraffic {
  inMsgs: number;
  outMsgs: number;
  inBytes: number;
  outBytes: number;
}

/**
 * Totals of the connections whose name starts with `namePrefix`, read from
 * nats-server's monitoring endpoint: a count of NATS messages does not move
 * with the machine's load the way CPU time does.
 */
export async function connTraffic(monitorUrl: string, namePrefix: string): Promise<ConnTraffic> {
  const res = await fetch(`${monitorUrl}/connz?limit=100000`);
  const body = (await res.json()) as {
    connections?: {
      name?: string;
      in_msgs: number;
      out_msgs: number;
      in_bytes: number;
      out_bytes: number;
    }[];
  };
  const total: ConnTraffic = { inMsgs: 0, outMsgs: 0, inBytes: 0, outBytes: 0 };
  for (const c of body.connections ?? []) {
    if (!c.name?.startsWith(namePrefix)) continue;
    total.inMsgs += c.in_msgs;
    total.outMsgs += c.out_msgs;
    total.inBytes += c.in_bytes;
    total.outBytes += c.out_bytes;
  }
  return total;
}

/** Traffic per message between two readings. */
export function trafficPer(before: ConnTraffic, after: ConnTraffic, messages: number) {
  const n = Math.max(1, messages);
  return {
    inMsgs: round3((after.inMsgs - before.inMsgs) / n),
    outMsgs: round3((after.outMsgs - before.outMsgs) / n),
    inBytes: Math.round((after.inBytes - before.inBytes) / n),
    outBytes: Math.round((after.outBytes - before.outBytes) / n),
  };
}
