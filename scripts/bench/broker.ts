// A broker node for the benchmark: `scripts/start.ts` (what `npm start`
// runs) as a child process joined to the bench's nats-server, so its CPU
// and memory are measured apart from the load generator's.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { AdminClient } from "../../src/admin-client.ts";
import { AgencyClient } from "../../src/client.ts";
import { sleep } from "./measure.ts";

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

const children = new Set<ChildProcess>();

/**
 * Kills `child` when this process exits, however it exits: a benchmark that
 * dies midway must not leave a broker or nats-server loading the machine.
 */
export function killOnExit(child: ChildProcess): void {
  children.add(child);
  child.once("exit", () => children.delete(child));
}

const tempDirs = new Set<string>();

/** A temporary directory of the run, removed at exit if the run did not remove it. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

process.once("exit", () => {
  for (const child of children) child.kill("SIGKILL");
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

export interface BrokerChild {
  child: ChildProcess;
  pid: number;
  nodeId: string;
  dataDir: string;
  /** performance.now() when the process was spawned. */
  spawnedAt: number;
  /** Milliseconds from spawn until the node said it is running. */
  startMs: number;
  /** The broker's event loop delay over the seconds since `since` (performance.now()). */
  loopDelay(since: number): LoopDelay;
  /** Writes a heap snapshot (needs `heapSnapshotDir`) and resolves with its path once complete. */
  heapSnapshot(): Promise<string>;
  /** What the broker's memory was made of at its last report (every second). */
  memory(): MemoryBreakdown | undefined;
  /** Sends SIGTERM and waits for a clean exit (which also writes a CPU profile). */
  stop(): Promise<void>;
}

/** `process.memoryUsage()` of the broker, in MiB. */
export interface MemoryBreakdown {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  /** The V8 heap of the journal's worker thread. */
  workerHeapTotal?: number;
}

/** How long the broker's event loop was held up, from scripts/bench/loop-delay.ts. */
export interface LoopDelay {
  seconds: number;
  /** The worst single delay. */
  maxMs: number;
  /** The median over those seconds of each second's 99th percentile. */
  p99MedianMs: number;
  /** Seconds in which the loop was held up longer than 25 ms at least once. */
  secondsOver25Ms: number;
}

interface LoopSample {
  at: number;
  p99Ms: number;
  maxMs: number;
  memoryMiB?: MemoryBreakdown;
}

export interface BrokerChildOptions {
  servers: string;
  nodeId: string;
  dataDir: string;
  replicas?: number;
  /** Where `node --cpu-prof` writes the broker's profile; absent profiles nothing. */
  cpuProfileDir?: string;
  /** Where the broker writes heap snapshots on SIGUSR2; absent, it takes none. */
  heapSnapshotDir?: string;
}

export async function startBrokerChild(opts: BrokerChildOptions): Promise<BrokerChild> {
  const profile = opts.cpuProfileDir ? ["--cpu-prof", `--cpu-prof-dir=${opts.cpuProfileDir}`] : [];
  if (opts.heapSnapshotDir) {
    profile.push("--heapsnapshot-signal=SIGUSR2", `--diagnostic-dir=${opts.heapSnapshotDir}`);
  }
  // Compiled JavaScript, as an operator runs it: tsx's loader costs the
  // process ~150 MiB and a share of its CPU.
  const loopDelayModule = path.join(repo, "dist/scripts/bench/loop-delay.js");
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [...profile, "--import", loopDelayModule, path.join(repo, "dist/scripts/start.js")],
    {
      cwd: repo,
      env: {
        ...process.env,
        MAGISTRAL_NATS: opts.servers,
        MAGISTRAL_NODE_ID: opts.nodeId,
        MAGISTRAL_DATA_DIR: opts.dataDir,
        MAGISTRAL_REPLICAS: String(opts.replicas ?? 1),
        MAGISTRAL_LOG_LEVEL: "info",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  killOnExit(child);
  const workerHeap: { total?: number } = {};
  const samples = readLoopDelays(child, workerHeap);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  await waitForRunning(child);
  const startMs = performance.now() - started;
  return {
    child,
    pid: child.pid!,
    nodeId: opts.nodeId,
    dataDir: opts.dataDir,
    spawnedAt: started,
    startMs,
    loopDelay: (since) => summarize(samples.filter((s) => s.at >= since)),
    memory: () => {
      const main = samples.at(-1)?.memoryMiB;
      return main && { ...main, workerHeapTotal: workerHeap.total };
    },
    heapSnapshot: () => takeHeapSnapshot(child, opts.heapSnapshotDir),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

async function takeHeapSnapshot(child: ChildProcess, dir: string | undefined): Promise<string> {
  if (!dir) throw new Error("the broker was started without a heap snapshot dir");
  const before = new Set(readdirSync(dir));
  child.kill("SIGUSR2");
  // The file appears when writing starts; the snapshot is whole when the
  // broker answers again, which the loop-delay reports show.
  for (let waited = 0; waited < 300_000; waited += 500) {
    await sleep(500);
    const file = readdirSync(dir).find((f) => !before.has(f) && f.endsWith(".heapsnapshot"));
    if (!file) continue;
    const full = path.join(dir, file);
    const size = statSync(full).size;
    await sleep(2_000);
    if (statSync(full).size === size && size > 0) return full;
  }
  throw new Error("heap snapshot not written within 5 minutes");
}

/** Collects the lines loop-delay.ts writes to the child's stderr. */
function readLoopDelays(child: ChildProcess, workerHeap: { total?: number }): LoopSample[] {
  const samples: LoopSample[] = [];
  let rest = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    const lines = (rest + chunk.toString()).split("\n");
    rest = lines.pop() ?? "";
    for (const line of lines) {
      if (line.startsWith(WORKER_HEAP_PREFIX)) {
        workerHeap.total = JSON.parse(line.slice(WORKER_HEAP_PREFIX.length)).heapTotal;
      }
      if (!line.startsWith(LOOP_DELAY_PREFIX)) continue;
      const value = JSON.parse(line.slice(LOOP_DELAY_PREFIX.length)) as Omit<LoopSample, "at">;
      samples.push({ at: performance.now(), ...value });
    }
  });
  return samples;
}

const LOOP_DELAY_PREFIX = "bench-loop-delay ";
const WORKER_HEAP_PREFIX = "bench-worker-heap ";

function summarize(samples: LoopSample[]): LoopDelay {
  const p99s = samples.map((s) => s.p99Ms).sort((a, b) => a - b);
  return {
    seconds: samples.length,
    maxMs: Math.max(0, ...samples.map((s) => s.maxMs)),
    p99MedianMs: p99s[Math.floor(p99s.length / 2)] ?? 0,
    secondsOver25Ms: samples.filter((s) => s.maxMs > 25).length,
  };
}

function waitForRunning(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`broker did not start: ${out}`)), 60_000);
    const onData = (chunk: Buffer) => {
      out = (out + chunk.toString()).slice(-4_000);
      if (!out.includes("magistral is running")) return;
      clearTimeout(timer);
      child.stdout?.off("data", onData);
      // Keep reading, so a chatty broker never blocks on a full pipe.
      child.stdout?.resume();
      resolve();
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", (chunk: Buffer) => {
      out = (out + chunk.toString()).slice(-4_000);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`broker exited with ${code}: ${out}`));
    });
  });
}

/** Registers the consumer and provider agencies of the benchmark and connects as each. */
export async function benchAgencies(servers: string) {
  const admin = await AdminClient.connect({ servers });
  await admin.call("agency.put", {
    id: "bench-provider",
    name: "Bench provider",
    roles: ["provider"],
  });
  await admin.call("agency.put", {
    id: "bench-consumer",
    name: "Bench consumer",
    roles: ["consumer"],
  });
  const provider = await AgencyClient.connect({ agency: "bench-provider", nats: { servers } });
  const consumer = await AgencyClient.connect({ agency: "bench-consumer", nats: { servers } });
  await retry(() => consumer.openReplies(), 30_000);
  return { admin, provider, consumer };
}

/** A plain service of the bench provider: no schema, so the bus itself is measured. */
export function benchService(id: string, concurrency: number) {
  return {
    service: {
      id,
      owner: "bench-provider",
      description: "benchmark echo",
      concurrency,
      callTimeoutMs: 10_000,
    },
  };
}

/**
 * Answer timeout of the requests that check the bus is ready. Longer than
 * the SDK's 15 s submit timeout: a shorter one rejects unobserved while the
 * submit still waits, and the rejection ends the process.
 */
export const READY_TIMEOUT_MS = 20_000;

/** Calls `work` until it succeeds or `timeoutMs` passes. */
export async function retry<T>(work: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await work();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(50);
    }
  }
}

/** Bytes of every file under `dir`. */
export function dirBytes(dir: string): number {
  let total = 0;
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of entries) {
    const full = path.join(dir, name);
    const st = statSync(full);
    total += st.isDirectory() ? dirBytes(full) : st.size;
  }
  return total;
}
