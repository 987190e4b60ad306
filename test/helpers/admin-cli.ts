import { spawn } from "node:child_process";
import path from "node:path";

const ADMIN = path.resolve("scripts/admin.ts");

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The last non-empty line of stdout. */
  lastLine: string;
}

export interface ScriptOptions {
  env?: NodeJS.ProcessEnv;
  /** SIGINT after this long. */
  timeoutMs?: number;
}

/** Runs a script of the repo in a child process (through tsx unless it is `.mjs`). */
export function runScript(
  script: string,
  args: string[],
  opts: ScriptOptions = {},
): Promise<CliRun> {
  const argv = script.endsWith(".mjs") ? [script, ...args] : ["--import", "tsx", script, ...args];
  const child = spawn(process.execPath, argv, {
    env: { ...process.env, MAGISTRAL_LOG_LEVEL: "warn", ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const timer = opts.timeoutMs ? setTimeout(() => child.kill("SIGINT"), opts.timeoutMs) : undefined;
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => {
    stdout += chunk;
  });
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  return new Promise((resolve) =>
    child.on("close", (code) => {
      clearTimeout(timer);
      const lines = stdout.split("\n").filter((l) => l.trim() !== "");
      resolve({ code, stdout, stderr, lastLine: lines.at(-1) ?? "" });
    }),
  );
}

/** Runs the admin script in a child process, as an operator would. */
export function runAdminCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  return runScript(ADMIN, args, { env });
}
