// The operators' command line: `npm run admin -- <command>` or `magistral <command>`.
//
// Commands live in topic modules under scripts/admin/, each exporting
// `register(program, ctx)`. To add a topic, write scripts/admin/<topic>.ts and
// list it in TOPICS below; the context gives it the bus and the output format.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import { toMagistralError } from "../src/errors.ts";
import * as agencies from "./admin/agencies.ts";
import * as alerts from "./admin/alerts.ts";
import * as cluster from "./admin/cluster.ts";
import { type AdminContext, createContext } from "./admin/context.ts";
import * as deadletters from "./admin/deadletters.ts";
import * as health from "./admin/health.ts";
import * as journal from "./admin/journal.ts";
import * as security from "./admin/security.ts";
import * as services from "./admin/services.ts";
import * as stats from "./admin/stats.ts";
import * as subscriptions from "./admin/subscriptions.ts";
import * as trace from "./admin/trace.ts";

/** A group of commands of the admin script. */
export interface AdminTopic {
  register(program: Command, ctx: AdminContext): void;
}

const TOPICS: AdminTopic[] = [
  agencies,
  services,
  trace,
  health,
  deadletters,
  alerts,
  journal,
  stats,
  subscriptions,
  security,
  cluster,
];

const DEFAULT_WAIT_MS = 15_000;

/** The program with every topic's commands, and the context they share. */
export function buildProgram(): { program: Command; ctx: AdminContext } {
  const program = new Command("magistral")
    .description("operate a Magistral bus")
    .option("-s, --server <url>", "NATS URL(s), comma-separated (default: the running bus)")
    .option("--json", "print results as JSON")
    .option("--user <user>", "NATS user (default: MAGISTRAL_NATS_USER)")
    .option("--password <password>", "NATS password (default: MAGISTRAL_NATS_PASS)")
    // Not --timeout-ms: program options are read anywhere on the line, and
    // register-service has its own --timeout-ms.
    .option("--wait-ms <ms>", "how long to wait for the bus to answer", toMs, DEFAULT_WAIT_MS)
    .exitOverride()
    .configureOutput({
      // Usage errors take the same one-line form as the bus's errors.
      outputError: (text, write) => write(`error BAD_REQUEST: ${text.replace(/^error: /, "")}`),
    });
  const ctx = createContext(program);
  for (const topic of TOPICS) topic.register(program, ctx);
  return { program, ctx };
}

function toMs(value: string): number {
  const ms = Number(value);
  if (!Number.isFinite(ms) || ms <= 0)
    throw new InvalidArgumentError("a positive number of milliseconds");
  return ms;
}

/** Runs one command line; resolves to the process exit code. */
export async function runAdmin(argv: string[]): Promise<number> {
  const { program, ctx } = buildProgram();
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    const error = toMagistralError(err);
    process.stderr.write(`error ${error.code}: ${error.message}\n`);
    return 1;
  } finally {
    await ctx.close();
  }
}

// Run as a script, not when imported by a test.
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  process.exitCode = await runAdmin(process.argv.slice(2));
}
