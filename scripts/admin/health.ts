import type { Command } from "commander";
import type { LaneHealth } from "../../actors/lane.ts";
import type { AdminContext } from "./context.ts";
import { formatTime, table } from "./output.ts";

/** `health`: every lane on every live broker node (the answering node gathers them). */
export function register(program: Command, ctx: AdminContext): void {
  program
    .command("health")
    .description("health of every service's provider lanes, as seen by each broker node")
    .action(async () => {
      const health = await ctx.call<LaneHealth[]>("service.health");
      health.sort(
        (a, b) => a.service.localeCompare(b.service) || a.provider.localeCompare(b.provider),
      );
      ctx.print(health, healthTable);
    });
}

function healthTable(rows: LaneHealth[]): string {
  return table(
    [
      "SERVICE",
      "PROVIDER",
      "NODE",
      "STATE",
      "CIRCUIT",
      "IN FLIGHT",
      "DELIVERED",
      "FAILED",
      "LAST ERROR",
    ],
    rows.map((h) => [
      h.service,
      h.provider,
      h.node,
      h.state,
      h.circuit,
      h.inFlight,
      h.delivered,
      h.failed,
      h.lastError && `${h.lastError.code} at ${formatTime(h.lastFailureAt)}`,
    ]),
  );
}
