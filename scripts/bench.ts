// `npm run bench`: the bus measured side by side with raw JetStream, raw
// core NATS request/reply, the bus's own hops without its logic (the floor)
// and a peer (Moleculer), all against one embedded nats-server on
// 127.0.0.1. `--quick` runs in under a minute; `--scale` measures many
// registered services instead (scripts/bench/scale.ts).
import { mkdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Command } from "commander";
import { freePort, startNatsServer } from "../cluster/nats-server.ts";
import { killOnExit, repo, tempDir } from "./bench/broker.ts";
import { benchFloor, type FloorResult } from "./bench/floor.ts";
import { benchMagistral, type MagistralResult } from "./bench/magistral.ts";
import { benchMoleculer, type MoleculerResult } from "./bench/moleculer.ts";
import { benchCoreRequest, benchJetStream, type JetStreamResult } from "./bench/raw.ts";
import { type Machine, machine, type Row, rowOf, table, writeResults } from "./bench/report.ts";
import type { CallBenchResult, PhasePlan } from "./bench/runner.ts";
import { runScale } from "./bench/scale.ts";

interface BenchOptions {
  quick?: boolean;
  scale?: boolean;
  profile?: boolean;
  heapSnapshot?: boolean;
  only?: string;
  inFlight: string;
  concurrency: string;
  saturationMs?: string;
  rates?: string;
  services?: string;
  cluster: boolean;
  payloads?: string;
}

const FULL: { payloads: number[]; plan: PhasePlan } = {
  payloads: [256, 4096, 65536],
  plan: {
    inFlight: 500,
    warmupMs: 2_000,
    saturationMs: 8_000,
    ratesPerSec: [100, 1_000, 5_000],
    rateMs: 8_000,
    maxInFlight: 5_000,
  },
};

const QUICK: typeof FULL = {
  payloads: [256],
  plan: {
    inFlight: 500,
    warmupMs: 500,
    saturationMs: 2_500,
    ratesPerSec: [100, 1_000, 5_000],
    rateMs: 1_500,
    maxInFlight: 5_000,
  },
};

const SYSTEMS = ["jetstream", "core", "floor", "magistral", "moleculer"] as const;
type System = (typeof SYSTEMS)[number];

const log = (line: string) => console.log(line);

function heapDir(): string {
  const dir = path.join(repo, "bench-results", "heap");
  mkdirSync(dir, { recursive: true });
  return dir;
}

async function main(): Promise<void> {
  const opts = new Command()
    .option("--quick", "one payload, short phases: under a minute")
    .option("--scale", "10, 1,000 and 10,000 registered services instead")
    .option("--profile", "write a CPU profile of the broker child to bench-results/profiles")
    .option("--only <systems>", `comma-separated subset of ${SYSTEMS.join(",")}`)
    .option("--in-flight <n>", "calls in flight at saturation", "500")
    .option("--concurrency <n>", "the bench service's calls in flight per broker node", "500")
    .option("--saturation-ms <ms>", "length of each saturation phase")
    .option("--rates <list>", "offered loads, comma-separated requests/s; 'none' for none")
    .option("--payloads <list>", "payload sizes in bytes, comma-separated")
    .option("--services <list>", "with --scale: service counts, comma-separated")
    .option("--no-cluster", "with --scale: skip the three-node cluster run")
    .option(
      "--heap-snapshot",
      "with --scale: a heap snapshot of the loaded broker, in bench-results/heap",
    )
    .parse()
    .opts<BenchOptions>();
  if (opts.scale) {
    await runScale({
      quick: opts.quick ?? false,
      counts: opts.services?.split(",").map(Number),
      cluster: opts.cluster,
      cpuProfileDir: opts.profile ? path.join(repo, "bench-results", "profiles") : undefined,
      heapSnapshotDir: opts.heapSnapshot ? heapDir() : undefined,
      log,
    });
    return;
  }
  await runComparison(opts);
}

/** What one comparison run measured; a system left out by `--only` stays empty. */
interface Measured {
  jetstream: JetStreamResult[];
  core: { payloadBytes: number; result: CallBenchResult }[];
  floor: FloorResult[];
  magistral?: MagistralResult;
  moleculer?: MoleculerResult[];
  moleculerError?: string;
}

async function runComparison(opts: BenchOptions): Promise<void> {
  const preset = { ...(opts.quick ? QUICK : FULL) };
  if (opts.payloads) preset.payloads = opts.payloads.split(",").map(Number);
  const plan = planOf(preset.plan, opts);
  const host = machine();
  log(`bench: ${host.nproc} cpus (${host.cpuModel}), node ${host.node}, ${host.natsServer}`);
  log(`load average before: ${host.loadAvgBefore.join(" ")}`);

  const dir = tempDir("mg-bench-");
  const server = await benchServer(dir);
  let measured: Measured;
  try {
    measured = await runSystems(server, dir, preset.payloads, plan, opts);
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  host.loadAvgAfter = os.loadavg().map((n) => Math.round(n * 100) / 100);
  report(host, measured, { plan, payloads: preset.payloads, opts });
}

/** The one nats-server of the run, with its monitoring port for /connz. */
async function benchServer(dir: string) {
  const monitorPort = await freePort();
  const server = await startNatsServer({
    name: "bench",
    storeDir: path.join(dir, "js"),
    extraConfig: `http: "127.0.0.1:${monitorPort}"`,
  });
  killOnExit(server.process);
  return { ...server, pid: server.process.pid!, monitorUrl: `http://127.0.0.1:${monitorPort}` };
}

async function runSystems(
  server: Awaited<ReturnType<typeof benchServer>>,
  dir: string,
  payloads: number[],
  plan: PhasePlan,
  opts: BenchOptions,
): Promise<Measured> {
  const only = new Set((opts.only?.split(",") ?? SYSTEMS) as System[]);
  const measured: Measured = { jetstream: [], core: [], floor: [] };
  for (const payloadBytes of payloads) {
    if (only.has("jetstream")) {
      log(`  raw jetstream, ${payloadBytes} B`);
      measured.jetstream.push(
        await benchJetStream(server.url, server.pid, payloadBytes, plan, log),
      );
    }
    if (only.has("core")) {
      log(`  raw core request/reply, ${payloadBytes} B`);
      const result = await benchCoreRequest(server.url, server.pid, payloadBytes, plan, log);
      measured.core.push({ payloadBytes, result });
    }
    if (only.has("floor")) {
      log(`  floor (bus hops, no logic), ${payloadBytes} B`);
      measured.floor.push(
        await benchFloor({
          url: server.url,
          natsPid: server.pid,
          monitorUrl: server.monitorUrl,
          payloadBytes,
          plan,
          log,
        }),
      );
    }
  }
  if (only.has("magistral")) {
    measured.magistral = await benchMagistral({
      servers: server.url,
      natsPid: server.pid,
      monitorUrl: server.monitorUrl,
      dataDir: path.join(dir, "broker"),
      payloads,
      plan,
      serviceConcurrency: Number(opts.concurrency),
      cpuProfileDir: opts.profile ? path.join(repo, "bench-results", "profiles") : undefined,
      log,
    });
  }
  if (only.has("moleculer")) {
    try {
      measured.moleculer = await benchMoleculer(server.url, server.pid, payloads, plan, log);
    } catch (err) {
      // The peer is optional: say why it did not run and report the rest.
      measured.moleculerError = err instanceof Error ? err.message : String(err);
      log(`  moleculer did not run: ${measured.moleculerError}`);
    }
  }
  return measured;
}

/** Prints the table and the summary line (last), and writes the JSON. */
function report(
  host: Machine,
  measured: Measured,
  run: { plan: PhasePlan; payloads: number[]; opts: BenchOptions },
): void {
  const rows = tableRows(measured);
  log("");
  log(table(rows));
  const { magistral } = measured;
  if (magistral) {
    log(
      `magistral: broker start ${magistral.brokerStartMs} ms, peak RSS ` +
        `${Math.round(magistral.brokerPeakRssMiB)} MiB, journal ` +
        `${Math.round(magistral.journalBytesPerMsg)} B/msg, stats ` +
        `${Math.round(magistral.statsBytesPerMsg)} B/msg over ${magistral.requests} requests`,
    );
  }
  const floor = floorLine(measured);
  const summary = summaryLine(measured);
  const file = writeResults(repo, run.opts.quick ? "bench-quick" : "bench", {
    machine: host,
    plan: run.plan,
    payloads: run.payloads,
    serviceConcurrency: Number(run.opts.concurrency),
    ...measured,
    rows,
    floorSummary: floor,
    summary,
  });
  log(
    `load average after: ${host.loadAvgAfter?.join(" ")}; results in ${path.relative(repo, file)}`,
  );
  log(floor);
  log(summary);
}

function planOf(preset: PhasePlan, opts: BenchOptions): PhasePlan {
  const plan = { ...preset, inFlight: Number(opts.inFlight) };
  if (opts.saturationMs) plan.saturationMs = Number(opts.saturationMs);
  if (opts.rates === "none") plan.ratesPerSec = [];
  else if (opts.rates) plan.ratesPerSec = opts.rates.split(",").map(Number);
  return plan;
}

function tableRows({ jetstream, core, floor, magistral, moleculer }: Measured): Row[] {
  const rows: Row[] = [];
  for (const js of jetstream) {
    rows.push({
      ...rowOf("jetstream publish", js.payloadBytes, js.latency),
      ...publishFigures(js),
    });
    rows.push({
      system: "jetstream consume+ack",
      payloadBytes: js.payloadBytes,
      saturationPerSec: Math.round(js.consume.opsPerSec),
      saturationP99Ms: Number.NaN,
      rates: [],
      cpu: js.consume.cpu,
    });
  }
  for (const c of core) rows.push(rowOf("core request/reply", c.payloadBytes, c.result));
  for (const f of floor)
    rows.push(rowOf("floor (bus hops, no logic)", f.payloadBytes, f, f.relayRssMiB));
  for (const m of magistral?.byPayload ?? [])
    rows.push(rowOf("magistral e2e", m.payloadBytes, m, m.brokerRssMiB));
  for (const m of moleculer ?? []) rows.push(rowOf(`moleculer ${m.version}`, m.payloadBytes, m));
  return rows;
}

function publishFigures(js: JetStreamResult) {
  return {
    saturationPerSec: Math.round(js.publish.opsPerSec),
    saturationP99Ms: js.publish.latency.p99Ms,
    cpu: js.publish.cpu,
  };
}

const ratio = (a?: number, b?: number) => (a && b ? (a / b).toFixed(2) : "n/a");

/** Saturation rates at 256 B of each system that ran. */
function at256({ jetstream, floor, magistral, moleculer }: Measured) {
  const e2e = magistral?.byPayload.find((m) => m.payloadBytes === 256);
  return {
    e2e,
    e2ePerSec: e2e?.saturation.opsPerSec,
    jetstreamPerSec: jetstream.find((j) => j.payloadBytes === 256)?.publish.opsPerSec,
    floorPerSec: floor.find((f) => f.payloadBytes === 256)?.saturation.opsPerSec,
    moleculerPerSec: moleculer?.find((m) => m.payloadBytes === 256)?.saturation.opsPerSec,
  };
}

/** `floor: e2e/floor=<ratio> floor/jetstream=<ratio> floor/moleculer=<ratio>`, at 256 B. */
function floorLine(measured: Measured): string {
  const { e2ePerSec, jetstreamPerSec, floorPerSec, moleculerPerSec } = at256(measured);
  return (
    `floor: e2e/floor=${ratio(e2ePerSec, floorPerSec)} ` +
    `floor/jetstream=${ratio(floorPerSec, jetstreamPerSec)} ` +
    `floor/moleculer=${ratio(floorPerSec, moleculerPerSec)}`
  );
}

/** `bench: e2e/jetstream=<ratio> e2e/moleculer=<ratio> p99@1000=<ms>`, at 256 B. */
function summaryLine(measured: Measured): string {
  const { e2e, e2ePerSec, jetstreamPerSec, moleculerPerSec } = at256(measured);
  const p99 = e2e?.rates.find((r) => r.offeredPerSec === 1_000)?.latency.p99Ms;
  return (
    `bench: e2e/jetstream=${ratio(e2ePerSec, jetstreamPerSec)} ` +
    `e2e/moleculer=${ratio(e2ePerSec, moleculerPerSec)} ` +
    `p99@1000=${p99 === undefined ? "n/a" : p99.toFixed(2)}`
  );
}

// Whatever ends the run early, the exit handler of bench/broker.ts kills the child processes.
const fail = (err: unknown) => {
  console.error(err);
  process.exit(1);
};
process.on("unhandledRejection", fail);
process.once("SIGINT", () => process.exit(130));
process.once("SIGTERM", () => process.exit(143));
main().catch(fail);
