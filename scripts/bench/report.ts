// The benchmark's output: the machine it ran on, a table for people, a JSON
// file in bench-results/ for comparison between runs, and one summary line.
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { natsServerBinary } from "../../cluster/nats-server.ts";
import type { CpuCost, LatencySummary } from "./measure.ts";
import type { CallBenchResult } from "./runner.ts";

export interface Machine {
  nproc: number;
  cpuModel: string;
  node: string;
  natsServer: string;
  loadAvgBefore: number[];
  loadAvgAfter?: number[];
}

export function machine(): Machine {
  const bin = natsServerBinary();
  const version = bin ? spawnSync(bin, ["--version"], { encoding: "utf8" }).stdout.trim() : "";
  return {
    nproc: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? "unknown",
    node: process.version,
    natsServer: version,
    loadAvgBefore: os.loadavg().map((n) => Math.round(n * 100) / 100),
  };
}

/** One row of the table: a system at one payload size. */
export interface Row {
  system: string;
  payloadBytes: number;
  saturationPerSec: number;
  saturationP99Ms: number;
  /** Latency at each offered rate, with the rate actually achieved. */
  rates: { offered: number; achieved: number; latency: LatencySummary; shed: number }[];
  cpu: CpuCost;
  brokerRssMiB?: number;
}

export function rowOf(
  system: string,
  payloadBytes: number,
  r: CallBenchResult,
  brokerRssMiB?: number,
): Row {
  return {
    system,
    payloadBytes,
    saturationPerSec: Math.round(r.saturation.opsPerSec),
    saturationP99Ms: r.saturation.latency.p99Ms,
    rates: r.rates.map((x) => ({
      offered: x.offeredPerSec,
      achieved: Math.round(x.achievedPerSec),
      latency: x.latency,
      shed: x.shed,
    })),
    cpu: r.saturation.cpu,
    brokerRssMiB,
  };
}

/** A fixed-width table: saturation, p50/p99 at each offered rate, CPU per message, broker RSS. */
export function table(rows: Row[]): string {
  const rates = [...new Set(rows.flatMap((r) => r.rates.map((x) => x.offered)))];
  const header = [
    "system",
    "bytes",
    "msg/s",
    "p99 sat",
    ...rates.map((r) => `p50/p99 @${r}`),
    "cpu µs/msg bench+nats+broker",
    "broker MiB",
  ];
  const lines = rows.map((row) => [
    row.system,
    String(row.payloadBytes),
    String(row.saturationPerSec),
    fmt(row.saturationP99Ms),
    ...rates.map((offered) => rateCell(row, offered)),
    cpuCell(row.cpu),
    row.brokerRssMiB === undefined ? "-" : String(Math.round(row.brokerRssMiB)),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const render = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ");
  return [render(header), render(widths.map((w) => "-".repeat(w))), ...lines.map(render)].join(
    "\n",
  );
}

function rateCell(row: Row, offered: number): string {
  const r = row.rates.find((x) => x.offered === offered);
  if (!r) return "-";
  // A rate the system could not keep up with is marked, its latency is then queueing.
  const behind = r.achieved < offered * 0.95 || r.shed > 0 ? ` (${r.achieved}/s)` : "";
  return `${fmt(r.latency.p50Ms)}/${fmt(r.latency.p99Ms)}${behind}`;
}

function cpuCell(cpu: CpuCost): string {
  const parts = [cpu.benchUsPerMsg, cpu.natsServerUsPerMsg];
  if (cpu.brokerUsPerMsg !== undefined) parts.push(cpu.brokerUsPerMsg);
  return parts.map((n) => String(Math.round(n))).join("+");
}

function fmt(ms: number): string {
  if (Number.isNaN(ms)) return "-";
  return ms >= 100 ? String(Math.round(ms)) : ms.toFixed(ms >= 10 ? 1 : 2);
}

/** Writes the run's results to bench-results/<name>-<time>.json and returns the path. */
export function writeResults(repo: string, name: string, results: unknown): string {
  const dir = path.join(repo, "bench-results");
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const file = path.join(dir, `${name}-${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  return file;
}
