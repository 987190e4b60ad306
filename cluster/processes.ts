// Child processes of a cluster on one machine, handled by pid: a node
// started by one run of the admin script is stopped by another, so nothing
// here may depend on holding the ChildProcess object.
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { ErrorCode, MagistralError } from "../src/errors.ts";

export interface SpawnSpec {
  command: string;
  args: string[];
  /** stdout and stderr are appended here. */
  logFile: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /**
   * In its own process group and unreferenced, so it outlives the process
   * that started it (the admin script) and a Ctrl-C meant for that one.
   */
  detached: boolean;
}

/** Starts a process whose output goes to a log file; returns it with the log's size before. */
export function spawnLogged(spec: SpawnSpec): { child: ChildProcess; logOffset: number } {
  mkdirSync(path.dirname(spec.logFile), { recursive: true });
  const logOffset = existsSync(spec.logFile) ? statSync(spec.logFile).size : 0;
  const fd = openSync(spec.logFile, "a");
  try {
    const child = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: spec.env,
      detached: spec.detached,
      stdio: ["ignore", fd, fd],
    });
    if (spec.detached) child.unref();
    // A failed exec is reported by the readiness wait, which sees the pid gone.
    child.on("error", () => {});
    return { child, logOffset };
  } finally {
    closeSync(fd);
  }
}

/**
 * Whether `pid` is a live process; when `marker` is given and /proc is
 * readable, also whether its command line or environment holds `marker`,
 * so a pid reused by an unrelated process is not taken for a node.
 */
export function isRunning(pid: number | undefined, marker?: string): boolean {
  if (!pid || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const proc = `/proc/${pid}`;
  if (!existsSync(proc)) return true;
  try {
    // A zombie has exited; only its parent has not collected it yet.
    const stat = readFileSync(`${proc}/stat`, "utf8");
    if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) return false;
    if (!marker) return true;
    const cmdline = readFileSync(`${proc}/cmdline`, "utf8");
    if (cmdline.includes(marker)) return true;
    return readFileSync(`${proc}/environ`, "utf8").split("\0").includes(marker);
  } catch {
    // Gone between the checks, or not ours to read.
    return false;
  }
}

/**
 * Sends `signal` and waits until the process is gone. After `graceMs`
 * a process that ignored SIGTERM is killed.
 */
export async function stopPid(
  pid: number,
  signal: NodeJS.Signals,
  marker?: string,
  graceMs = 30_000,
): Promise<void> {
  if (!isRunning(pid, marker)) return;
  sendSignal(pid, signal);
  if (await waitGone(pid, marker, graceMs)) return;
  sendSignal(pid, "SIGKILL");
  if (!(await waitGone(pid, marker, 5_000))) {
    throw new MagistralError(ErrorCode.INTERNAL, `process ${pid} did not exit`);
  }
}

function sendSignal(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

async function waitGone(pid: number, marker: string | undefined, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (isRunning(pid, marker)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

/**
 * Waits until the log file holds `line` past `offset`.
 * @throws MagistralError UNAVAILABLE with the log's tail if the process exits or time runs out
 */
export async function waitForLogLine(
  logFile: string,
  offset: number,
  line: string,
  pid: number,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = readFrom(logFile, offset);
    if (text.includes(line)) return;
    if (!isRunning(pid)) throw notReady(`process ${pid} exited`, text);
    if (Date.now() > deadline) throw notReady(`no "${line}" in ${timeoutMs}ms`, text);
    await sleep(100);
  }
}

/** The last `bytes` of a log file, for error messages. */
export function logTail(logFile: string, bytes = 2_000): string {
  if (!existsSync(logFile)) return "";
  const text = readFileSync(logFile, "utf8");
  return text.slice(-bytes);
}

function readFrom(file: string, offset: number): string {
  if (!existsSync(file)) return "";
  return readFileSync(file).subarray(offset).toString("utf8");
}

function notReady(why: string, log: string): MagistralError {
  return new MagistralError(ErrorCode.UNAVAILABLE, `${why}: ${log.slice(-1_500)}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
