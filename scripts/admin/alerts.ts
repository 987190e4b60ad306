import { connect } from "@nats-io/transport-node";
import type { Command } from "commander";
import type { Alert } from "../../actors/alerts.ts";
import { decodeValue } from "../../src/envelope.ts";
import type { AdminContext } from "./context.ts";
import { formatTime, printJson, table } from "./output.ts";

interface AlertOptions {
  service?: string;
  severity?: string;
  limit: number;
  follow?: boolean;
}

/** `alerts`: recent operator alerts, and `--follow` to watch new ones. */
export function register(program: Command, ctx: AdminContext): void {
  program
    .command("alerts")
    .description("operator alerts: services down and recovered, circuits, dead letters")
    .option("--service <id>", "only this service's")
    .option("--severity <level>", "info, warning or critical")
    .option("--limit <n>", "how many recent alerts", Number, 50)
    .option("-f, --follow", "keep printing new alerts as they come")
    .action(async (opts: AlertOptions) => {
      const recent = await ctx.call<Alert[]>("alert.list", {
        service: opts.service,
        severity: opts.severity,
        limit: opts.limit,
      });
      ctx.print(recent, alertTable);
      if (opts.follow) await follow(ctx, opts);
    });
}

async function follow(ctx: AdminContext, opts: AlertOptions): Promise<void> {
  const { json } = ctx.options();
  const nc = await connect(ctx.natsOptions());
  const subject = `mg.alert.${opts.severity ?? "*"}.${opts.service ?? "*"}`;
  const sub = nc.subscribe(subject);
  process.once("SIGINT", () => sub.unsubscribe());
  for await (const m of sub) {
    const alert = decodeValue(m.data) as Alert;
    if (json) printJson(alert);
    else process.stdout.write(`${alertLine(alert)}\n`);
  }
  await nc.close();
}

function alertTable(alerts: Alert[]): string {
  return table(
    ["AT", "SEVERITY", "KIND", "SERVICE", "PROVIDER", "NODE", "MESSAGE"],
    alerts.map((a) => [
      formatTime(a.at),
      a.severity,
      a.kind,
      a.service,
      a.provider,
      a.node,
      a.message,
    ]),
  );
}

function alertLine(a: Alert): string {
  return [formatTime(a.at), a.severity, a.kind, a.service, a.provider ?? "-", a.message].join("  ");
}
