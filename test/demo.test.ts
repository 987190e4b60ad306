import { existsSync } from "node:fs";
import path from "node:path";
import test from "ava";
import { runScript } from "./helpers/admin-cli.ts";
import { tempDir } from "./helpers/nats.ts";

const DEMO = path.resolve("scripts/demo.ts");
const DEMO_TIMEOUT_MS = 40_000;

/** Runs the demo as `npm run demo` does, with its data under `dataDir`. */
function runDemo(dataDir: string) {
  return runScript(DEMO, [], { env: { MAGISTRAL_DATA_DIR: dataDir }, timeoutMs: DEMO_TIMEOUT_MS });
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
