import type { Command } from "commander";
import type { EventSubscription } from "../../src/subscriptions.ts";
import type { AdminContext } from "./context.ts";
import { formatTime, table } from "./output.ts";

/** `subscriptions`. */
export function register(program: Command, ctx: AdminContext): void {
  program
    .command("subscriptions")
    .description("agencies' event subscriptions")
    .option("--agency <id>", "only this agency's")
    .action(async (opts: { agency?: string }) => {
      const body = opts.agency === undefined ? {} : { agency: opts.agency };
      const subs = await ctx.call<EventSubscription[]>("subscription.list", body);
      subs.sort((a, b) => a.agency.localeCompare(b.agency) || a.id.localeCompare(b.id));
      ctx.print(subs, subscriptionTable);
    });
}

function subscriptionTable(subs: EventSubscription[]): string {
  return table(
    ["AGENCY", "ID", "KINDS", "SERVICES", "CREATED"],
    subs.map((s) => [
      s.agency,
      s.id,
      s.kinds.join(","),
      s.services?.join(",") ?? "all",
      formatTime(s.createdAt),
    ]),
  );
}
