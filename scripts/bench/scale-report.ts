// What `npm run bench -- --scale` found, as the table it prints and the
// memory line of each run (scripts/bench/scale.ts measures).
import type { MemoryBreakdown } from "./broker.ts";
import type { cpuMeter, SaturationResult, trafficPer } from "./measure.ts";

export interface ScaleResult {
  services: number;
  registerMs: number;
  /** A broker restarted with every service registered: spawn until it said it runs. */
  restartMs: number;
  /** From spawn until a request to each of a sample of services was answered. */
  readyMs: number;
  idleBrokerRssMiB: number;
  /** The broker's heap, buffers and RSS, idle and after the load. */
  memoryMiB: { idle?: MemoryBreakdown; afterLoad?: MemoryBreakdown };
  /** CPU of an idle broker and nats-server: the cost of keeping every consumer pulled. */
  idleCpuPercent: { broker: number; natsServer: number };
  /** NATS messages per second of the idle broker's connection. */
  idleTraffic: ReturnType<typeof trafficPer>;
  /** Requests a second over one call to every service, before the warm-up. */
  firstRoundPerSec: number;
  throughput: SaturationResult;
  cpuUsPerMsg: ReturnType<ReturnType<typeof cpuMeter>["per"]>;
  brokerRssMiB: number;
  brokerPeakRssMiB: number;
  journalBytesPerMsg: number;
}

export interface ClusterResult {
  replicas: number;
  natsServers: number;
  /** How the cluster was started. */
  how: string;
  throughput?: SaturationResult;
  error?: string;
}

export function printScale(
  results: ScaleResult[],
  cluster: ClusterResult | undefined,
  log: (line: string) => void,
) {
  log("");
  const columns: [string, (r: ScaleResult) => string][] = [
    ["services", (r) => String(r.services)],
    ["register ms", (r) => String(r.registerMs)],
    ["restart ms", (r) => String(r.restartMs)],
    ["ready ms", (r) => String(r.readyMs)],
    ["idle cpu broker/nats %", (r) => `${r.idleCpuPercent.broker}/${r.idleCpuPercent.natsServer}`],
    [
      "idle msgs/s pub/recv",
      (r) => `${Math.round(r.idleTraffic.inMsgs)}/${Math.round(r.idleTraffic.outMsgs)}`,
    ],
    ["first/s", (r) => String(Math.round(r.firstRoundPerSec))],
    ["msg/s", (r) => String(Math.round(r.throughput.opsPerSec))],
    ["p99 ms", (r) => String(r.throughput.latency.p99Ms)],
    [
      "cpu µs/msg nats/broker",
      ({ cpuUsPerMsg: cpu }) =>
        `${Math.round(cpu.natsServerUsPerMsg)}/${Math.round(cpu.brokerUsPerMsg ?? 0)}`,
    ],
    [
      "RSS idle/after MiB",
      (r) => `${Math.round(r.idleBrokerRssMiB)}/${Math.round(r.brokerRssMiB)}`,
    ],
    ["journal B/msg", (r) => String(Math.round(r.journalBytesPerMsg))],
  ];
  const rows = results.map((r) => columns.map(([, cell]) => cell(r)));
  const widths = columns.map(([name], i) =>
    Math.max(name.length, ...rows.map((row) => row[i]!.length)),
  );
  log(columns.map(([name], i) => name.padEnd(widths[i]!)).join("  "));
  for (const row of rows) log(row.map((cell, i) => cell.padEnd(widths[i]!)).join("  "));
  if (!cluster) return;
  const c = cluster.throughput;
  log(
    c
      ? `cluster R3: ${Math.round(c.opsPerSec)}/s, p99 ${c.latency.p99Ms} ms (${cluster.how})`
      : `cluster R3: failed: ${cluster.error}`,
  );
}

/** A memory report split into V8 heap, external, the journal worker's heap and the rest. */
export function describe(m: MemoryBreakdown | undefined): string {
  if (!m) return "not reported";
  const worker = m.workerHeapTotal ?? 0;
  const rest = m.rss - m.heapTotal - m.external - worker;
  return (
    `RSS ${m.rss} MiB = V8 heap ${m.heapTotal} (${m.heapUsed} used) + external ${m.external} ` +
    `(buffers ${m.arrayBuffers}) + journal worker heap ${worker} + other ${rest}`
  );
}
