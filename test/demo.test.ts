import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import test from "ava";
import { tempDir } from "./helpers/nats.ts";

const DEMO = path.resolve("scripts/demo.ts");
const DEMO_TIMEOUT_MS = 40_000;

/** Runs the demo as `npm run demo` does, with its data under `dataDir`. */
function runDemo(
  dataDir: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", DEMO], {
    env: { ...process.env, MAGISTRAL_DATA_DIR: dataDir, MAGISTRAL_LOG_LEVEL: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const timer = setTimeout(() => child.kill("SIGINT"), DEMO_TIMEOUT_MS);
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
      resolve({ code, stdout, stderr });
    }),
  );
}

test("the demo runs end to end and loses nothing", async (t) => {
  const dataDir = tempDir(t, "mg-demo-");

  const { code, stdout, stderr } = await runDemo(dataDir);

  t.is(code, 0, stderr);
  const lines = stdout.trimEnd().split("\n");
  t.is(lines.at(-1), "demo: 13 sent, 13 responded, 0 lost");
  t.true(lines.some((l) => /^ {2}mfc -> fns-egrul-extract \(fns, by XML root\): accepted/.test(l)));
  t.is(lines.filter((l) => /: rejected SCHEMA_INVALID$/.test(l)).length, 3);
  const retried =
    /^ {2}mfc -> rosreestr-egrn-extract \(rosreestr\): accepted > attempt 1 > failed PROVIDER_FAULT > attempt 2 > delivered \d+ms > responded \d+ms$/m;
  t.regex(stdout, retried);
  t.true(existsSync(path.join(dataDir, "demo", "nats")));
  t.false(existsSync(path.join(dataDir, "demo", "runtime.json")), "runtime file removed at stop");
});
