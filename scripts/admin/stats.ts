import { type Command, Option } from "commander";
import type { QueueDepth } from "../../src/queue-depth.ts";
import type { LatencySummary, StatsRow } from "../../src/stats-store.ts";
import type { AdminContext } from "./context.ts";
import { formatMs, formatTime, table } from "./output.ts";
import { parseTimeArg } from "./time-args.ts";

interface StatsOptions {
  from: number;
  to?: number;
  granularity: string;
  by?: string;
  service?: string;
  consumer?: string;
  provider?: string;
  outcome?: string;
}

/** `stats` and `queues`. */
export function register(program: Command, ctx: AdminContext): void {
  program
    .command("stats")
    .description("calls, outcomes and latency percentiles over a time range, computed on demand")
    .option("--from <time>", "from this time: 15m, 2h, 7d ago, epoch ms or ISO", parseTimeArg)
    .option("--to <time>", "up to this time (default: now)", parseTimeArg)
    .addOption(
      new Option("--granularity <size>", "bucket size")
        .choices(["minute", "hour", "day", "all"])
        .default("hour"),
    )
    .addOption(
      new Option("--by <dimension>", "one row per").choices([
        "service",
        "consumer",
        "provider",
        "outcome",
      ]),
    )
    .option("--service <id>", "only this service")
    .option("--consumer <id>", "only requests of this consumer agency")
    .option("--provider <id>", "only calls to this provider agency")
    .option("--outcome <type>", "only this step: accepted, rejected, responded...")
    .action(async (opts: StatsOptions) => {
      const { from, to, by, ...rest } = opts;
      const body: Record<string, unknown> = { ...rest, groupBy: by };
      body.fromMs = from ?? Date.now() - 24 * 3_600_000;
      if (to !== undefined) body.toMs = to;
      const clean = Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined));
      ctx.print(await ctx.call<StatsRow[]>("stats.query", clean), statsTable);
    });

  program
    .command("queues")
    .description("requests waiting in QUEUE per service, and the age of the oldest")
    .action(async () => {
      const depths = await ctx.call<QueueDepth[]>("stats.queues");
      depths.sort((a, b) => a.service.localeCompare(b.service));
      ctx.print(depths, queueTable);
    });
}

function statsTable(rows: StatsRow[]): string {
  const headers = ["FROM", "GROUP", "ACCEPTED", "REJECTED", "RESPONDED", "FAILED", "DEAD"];
  headers.push("E2E P50/P95/P99", "CALL P50/P95/P99");
  return table(
    headers,
    rows.map((r) => [
      formatTime(r.fromMs),
      r.group,
      r.counts.accepted ?? 0,
      r.counts.rejected ?? 0,
      r.counts.responded ?? 0,
      r.counts.failed ?? 0,
      r.counts.deadlettered ?? 0,
      percentiles(r.e2eMs),
      percentiles(r.callMs),
    ]),
  );
}

function percentiles(s: LatencySummary | undefined): string | undefined {
  if (!s) return undefined;
  return [s.p50Ms, s.p95Ms, s.p99Ms].map((ms) => formatMs(ms)).join(" / ");
}

function queueTable(rows: QueueDepth[]): string {
  return table(
    ["SERVICE", "PENDING", "IN FLIGHT", "REDELIVERED", "OLDEST", "OLDEST AGE"],
    rows.map((d) => [
      d.service,
      d.pending,
      d.inFlight,
      d.redelivered,
      formatTime(d.oldestAt),
      formatMs(d.oldestAgeMs),
    ]),
  );
}
