import path from "node:path";
import { type Command, CommanderError } from "commander";
import { loadConfig } from "../../src/config.ts";
import type { MessageEvent } from "../../src/events.ts";
import { rebuildJournal } from "../../src/journal-rebuild.ts";
import type { JournalPage } from "../../src/journal-search.ts";
import { type VerifyReport, verifyDataDir } from "../../src/journal-verify.ts";
import { connectBus } from "../../src/nats.ts";
import type { AdminContext } from "./context.ts";
import { formatTime, table } from "./output.ts";
import { parseCount, parseTimeArg } from "./time-args.ts";

/** Exit code of `journal verify` when the chain is broken (1 is any other failure). */
export const CHAIN_BROKEN_EXIT_CODE = 2;

interface SearchOptions {
  service?: string;
  agency?: string;
  outcome?: string;
  from?: number;
  to?: number;
  limit?: number;
  cursor?: string;
  newestFirst?: boolean;
}

/** `journal search`, `journal verify`, `journal archive` and `journal rebuild`. */
export function register(program: Command, ctx: AdminContext): void {
  const journal = program.command("journal").description("search, verify and maintain the journal");

  journal
    .command("search")
    .description("journal records by service, agency, outcome and time, a page at a time")
    .option("--service <id>", "only this service")
    .option("--agency <id>", "only messages this agency sent or served, or changes about it")
    .option("--outcome <type>", "only this step: accepted, rejected, failed, responded, changed...")
    .option("--from <time>", "from this time: 15m, 2h, 7d ago, epoch ms or ISO", parseTimeArg)
    .option("--to <time>", "up to this time", parseTimeArg)
    .option("--limit <n>", "records per page (default 100, at most 1000)", parseCount)
    .option("--cursor <cursor>", "continue after the page that printed it")
    .option("--newest-first", "newest records first")
    .action(async (opts: SearchOptions) => {
      const { from, to, ...rest } = opts;
      const body = { ...rest, fromMs: from, toMs: to };
      ctx.print(await ctx.call<JournalPage>("journal.search", dropUndefined(body)), pageText);
    });

  journal
    .command("verify")
    .description("check the hash chain of every node's journal, offline (stop the brokers first)")
    .option("--data-dir <dir>", "the data dir holding journal/<node> (default: ./data)")
    .action(async (opts: { dataDir?: string }) => {
      const dataDir = path.resolve(opts.dataDir ?? loadConfig().dataDir);
      const reports = await verifyDataDir(dataDir);
      ctx.print(reports, verifyText);
      if (reports.some((r) => r.breaks.length > 0)) {
        throw new CommanderError(CHAIN_BROKEN_EXIT_CODE, "magistral.journalBroken", "");
      }
    });

  // LIMITATION: the admin API is a queue group, so only the node that answers archives now;
  // the others archive at their own hourly check.
  journal
    .command("archive")
    .description("archive records past the configured age now, on the node that answers")
    .action(async () => {
      const count = await ctx.call<number>("journal.archive");
      ctx.print({ archived: count }, ({ archived }) => `archived ${archived} records`);
    });

  journal
    .command("rebuild")
    .description("build a journal afresh from EVENTS into a new directory")
    .requiredOption("--into <dir>", "an empty or new directory for the rebuilt RocksDB journal")
    .action(async (opts: { into: string }) => {
      const bus = await connectBus(ctx.natsOptions());
      try {
        const report = await rebuildJournal(bus, path.resolve(opts.into));
        ctx.print(report, (r) => `rebuilt ${r.records} records from ${r.batches} event batches`);
      } finally {
        await bus.nc.drain().catch(() => {});
      }
    });
}

function pageText(page: JournalPage): string {
  const rows = page.records.map(({ seq, event }) => [
    formatTime(event.at),
    seq,
    event.type,
    event.id,
    event.service,
    event.agency,
    detail(event),
  ]);
  const text = table(["TIME", "SEQ", "STEP", "ID", "SERVICE", "AGENCY", "DETAIL"], rows);
  return page.cursor ? `${text}\nmore: --cursor ${page.cursor}` : text;
}

function detail(e: MessageEvent): string | undefined {
  if (e.type === "changed") return `${e.entity} ${e.key} by ${e.who}`;
  if (e.code) return `${e.code}${e.cause ? `: ${e.cause}` : ""}`;
  if (e.latencyMs !== undefined) return `${e.latencyMs}ms`;
  if (e.attempt !== undefined) return `attempt ${e.attempt}`;
  return undefined;
}

/** One line per node, the first break of each, and the total as the last line. */
export function verifyText(reports: VerifyReport[]): string {
  const lines: string[] = [];
  for (const r of reports) {
    lines.push(`${r.node}: ${r.records} records, ${r.breaks.length} breaks`);
    const first = r.breaks[0];
    if (first) lines.push(`  first break: record ${first.seq} in ${first.where}: ${first.reason}`);
  }
  const records = reports.reduce((n, r) => n + r.records, 0);
  const breaks = reports.reduce((n, r) => n + r.breaks.length, 0);
  lines.push(`journal verify: ${records} records, ${breaks} breaks`);
  return lines.join("\n");
}

function dropUndefined(body: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined));
}
