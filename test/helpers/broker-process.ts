import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { ExecutionContext } from "ava";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export interface BrokerProcess {
  child: ChildProcess;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Runs `scripts/start.ts` (what `npm start` runs) as a child process joined
 * to `servers`, and resolves once it logs that it is running.
 */
export async function startBrokerProcess(
  t: ExecutionContext,
  opts: { servers: string; nodeId: string; dataDir: string; env?: Record<string, string> },
): Promise<BrokerProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(repo, "scripts/start.ts")], {
    cwd: repo,
    env: {
      ...process.env,
      MAGISTRAL_NATS: opts.servers,
      MAGISTRAL_NODE_ID: opts.nodeId,
      MAGISTRAL_DATA_DIR: opts.dataDir,
      MAGISTRAL_LOG_LEVEL: "info",
      ...opts.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const kill = async (signal: NodeJS.Signals = "SIGKILL") => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  t.teardown(() => kill());
  await new Promise<void>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(
      () => reject(new Error(`broker did not start: ${out.slice(-2000)}`)),
      30_000,
    );
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes("magistral is running")) {
        clearTimeout(timer);
        child.stdout?.off("data", onData);
        resolve();
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", (c: Buffer) => {
      out += c.toString();
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`broker exited with ${code}: ${out.slice(-2000)}`));
    });
  });
  child.stdout?.resume();
  return { child, kill };
}
