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

/** Runs the admin script in a child process, as an operator would. */
export function runAdminCli(args: string[]): Promise<CliRun> {
  const child = spawn(process.execPath, ["--import", "tsx", ADMIN, ...args], {
    env: { ...process.env, MAGISTRAL_LOG_LEVEL: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
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
      const lines = stdout.split("\n").filter((l) => l.trim() !== "");
      resolve({ code, stdout, stderr, lastLine: lines.at(-1) ?? "" });
    }),
  );
}
