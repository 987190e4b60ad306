// What the cluster chaos scenarios share: a three-node NATS cluster and two
// broker nodes started by the admin script's launcher in a temporary
// directory, a provider and a consumer agency, steady load, and a report.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ClusterLauncher } from "../../cluster/launcher.ts";
import { countingProvider, type LoadReport, SteadyLoad } from "../../cluster/load.ts";
import { localTopology } from "../../cluster/local.ts";
import { AdminClient } from "../../src/admin-client.ts";
import { AgencyClient } from "../../src/client.ts";
import { rootLogger } from "../../src/logger.ts";
import type { ChaosOptions, ChaosResult } from "./harness.ts";

export const SERVICE = "registry-check";

/** The running cluster and what a scenario does to it while load runs. */
export interface ClusterRun {
  launcher: ClusterLauncher;
  admin: AdminClient;
  load: SteadyLoad;
  log: (line: string) => void;
}

type Step = (run: ClusterRun) => Promise<void>;

/**
 * Brings up the cluster, offers load for `opts.durationMs` while `disrupt`
 * runs (load goes on until it is done), waits for every answer, runs
 * `check`, and takes everything down. `disrupt` starts once load has run
 * a second.
 */
export async function clusterChaos(
  opts: ChaosOptions,
  disrupt: Step,
  check?: Step,
): Promise<ChaosResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "mg-chaos-cluster-"));
  const topology = await localTopology({ dataDir: dir, brokers: 2 });
  const log = rootLogger.child({ component: "chaos" }, { level: "warn" });
  const launcher = new ClusterLauncher(topology, { detached: false, log });
  const clients: { close(): Promise<void> }[] = [];
  try {
    opts.log(`starting 3 NATS nodes and 2 broker nodes under ${dir}`);
    await launcher.up();
    const admin = await AdminClient.connect({ servers: launcher.urls() });
    clients.push(admin);
    const { provider, consumer } = await setUp(admin, launcher.urls());
    clients.push(provider, consumer);
    countingProvider(provider, SERVICE);
    const load = new SteadyLoad({
      consumer,
      service: SERVICE,
      ratePerSec: opts.rate,
      idPrefix: `chaos-${Date.now()}`,
    });
    const run = { launcher, admin, load, log: opts.log };
    const report = await underLoad(run, opts, disrupt);
    printReport(opts.log, report);
    await check?.(run);
    return report;
  } finally {
    for (const c of clients.reverse()) await c.close().catch(() => {});
    await launcher.down().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

async function underLoad(run: ClusterRun, opts: ChaosOptions, disrupt: Step) {
  const started = Date.now();
  const ticker = setInterval(() => {
    const seconds = Math.round((Date.now() - started) / 1_000);
    opts.log(`  t+${seconds}s ${run.load.progress()}`);
  }, 2_000);
  try {
    await run.load.start();
    await sleep(1_000);
    await disrupt(run);
    await sleep(Math.max(0, opts.durationMs - (Date.now() - started)));
    return await run.load.drain(60_000, opts.log);
  } finally {
    clearInterval(ticker);
  }
}

/** Agencies `fns` (provider) and `mfc` (consumer) and one service with quick retries. */
async function setUp(admin: AdminClient, servers: string[]) {
  await admin.call("agency.put", { id: "fns", name: "Tax service", roles: ["provider"] });
  await admin.call("agency.put", { id: "mfc", name: "Service centre", roles: ["consumer"] });
  await admin.call("service.put", {
    service: {
      id: SERVICE,
      owner: "fns",
      callTimeoutMs: 1_000,
      retry: { attempts: 100, firstDelayMs: 200, factor: 1.5, maxDelayMs: 1_000, jitter: 0.2 },
    },
  });
  const provider = await AgencyClient.connect({ agency: "fns", nats: { servers } });
  const consumer = await AgencyClient.connect({ agency: "mfc", nats: { servers } });
  return { provider, consumer };
}

function printReport(log: (line: string) => void, r: LoadReport): void {
  log(
    `  submissions: offered=${r.offered} abandoned=${r.abandoned} ` +
      `refused=${r.refusals} over ${r.refusedWindowMs} ms, unanswered=${r.timeouts}, ` +
      `slowest accepted after ${r.maxAcceptMs} ms, longest pause ${r.longestStallMs} ms`,
  );
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
