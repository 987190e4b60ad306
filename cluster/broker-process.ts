import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** What scripts/start.ts logs once its broker node serves. */
const READY_LINE = "magistral is running";
const START_TIMEOUT_MS = 30_000;

export interface BrokerProcessSpec {
  /** NATS URLs, comma-separated. */
  servers: string;
  nodeId: string;
  dataDir: string;
  env?: Record<string, string>;
}

export interface BrokerProcess {
  child: ChildProcess;
  /** Sends `signal` (default SIGKILL) and waits for the exit. Safe to call twice. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Runs one broker node as `npm start` does (scripts/start.ts) in a child
 * process joined to `servers`, and resolves once it logs that it serves.
 */
export async function startBrokerProcess(spec: BrokerProcessSpec): Promise<BrokerProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(repo, "scripts/start.ts")], {
    cwd: repo,
    env: {
      ...process.env,
      MAGISTRAL_NATS: spec.servers,
      MAGISTRAL_NODE_ID: spec.nodeId,
      MAGISTRAL_DATA_DIR: spec.dataDir,
      MAGISTRAL_LOG_LEVEL: "info",
      ...spec.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const kill = async (signal: NodeJS.Signals = "SIGKILL") => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  try {
    await readyLine(child);
  } catch (err) {
    await kill();
    throw err;
  }
  return { child, kill };
}

function readyLine(child: ChildProcess): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(
      () => reject(new Error(`broker did not start: ${out.slice(-2000)}`)),
      START_TIMEOUT_MS,
    );
    const keep = (chunk: Buffer) => {
      out = (out + chunk.toString()).slice(-10_000);
    };
    const onData = (chunk: Buffer) => {
      keep(chunk);
      if (!out.includes(READY_LINE)) return;
      clearTimeout(timer);
      // From here on its output is drained and dropped, so a full pipe never blocks it.
      child.stdout?.off("data", onData);
      child.stderr?.off("data", keep);
      child.stdout?.resume();
      child.stderr?.resume();
      resolve();
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", keep);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`broker exited with ${code}: ${out.slice(-2000)}`));
    });
  });
}
