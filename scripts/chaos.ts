// `npm run chaos -- <scenario>`: drives load through a real bus while
// something fails, prints progress, and ends with one line:
// `chaos <scenario>: accepted=<n> responded=<n> duplicates=<n> lost=<n>`.
// Exits non-zero if anything accepted was lost or answered twice.
import { Command } from "commander";
import type { ChaosOptions, ChaosResult } from "./chaos/harness.ts";

type Scenario = (opts: ChaosOptions) => Promise<ChaosResult>;

const SCENARIOS: Record<string, () => Promise<{ run: Scenario }>> = {
  "provider-outage": () => import("./chaos/provider-outage.ts"),
  "broker-crash": () => import("./chaos/broker-crash.ts"),
  "nats-node-kill": () => import("./chaos/nats-node-kill.ts"),
  "rolling-restart": () => import("./chaos/rolling-restart.ts"),
};

const program = new Command("chaos")
  .argument("<scenario>", `one of: ${Object.keys(SCENARIOS).join(", ")}`)
  .option("--rate <n>", "requests per second", Number, 50)
  .option("--duration-ms <ms>", "how long load is offered", Number, 12_000)
  .action(async (name: string, opts: { rate: number; durationMs: number }) => {
    const load = SCENARIOS[name];
    if (!load) {
      console.error(`unknown scenario ${name}; one of: ${Object.keys(SCENARIOS).join(", ")}`);
      process.exit(2);
    }
    const { run } = await load();
    console.log(`chaos ${name}: ${opts.rate} requests/s for ${opts.durationMs} ms`);
    const r = await run({ ...opts, log: (line) => console.log(line) });
    const counts = `accepted=${r.accepted} responded=${r.responded}`;
    console.log(`chaos ${name}: ${counts} duplicates=${r.duplicates} lost=${r.lost}`);
    process.exit(r.lost > 0 || r.duplicates > 0 ? 1 : 0);
  });

await program.parseAsync();
