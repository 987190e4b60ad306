#!/usr/bin/env node
// The `magistral` command: runs the TypeScript admin script through tsx, so
// an installed package needs no build step. Arguments and exit code pass through.
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
// Resolved from this file, so the command works from any working directory.
const tsx = import.meta.resolve("tsx");
const child = spawn(
  process.execPath,
  ["--import", tsx, path.join(here, "admin.ts"), ...process.argv.slice(2)],
  { stdio: "inherit", cwd: process.cwd() },
);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => child.kill(signal));
}
child.on("exit", (code, signal) => {
  process.exitCode = code ?? (signal ? 128 : 1);
});
