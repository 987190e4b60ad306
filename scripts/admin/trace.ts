import type { Command } from "commander";
import type { MessageEvent } from "../../src/events.ts";
import type { JournalRecord } from "../../src/journal-store.ts";
import type { AdminContext } from "./context.ts";
import { formatTime, table } from "./output.ts";

/** `trace <message-id>`. */
export function register(program: Command, ctx: AdminContext): void {
  program
    .command("trace")
    .description("the journal history of one message, in order")
    .argument("<message-id>", "id of the request")
    .action(async (id: string) => {
      ctx.print(await ctx.call<JournalRecord[]>("message.trace", { id }), traceText);
    });
}

/**
 * A message's steps on one line, as
 * `accepted > attempt 1 > delivered 3ms > responded 12ms`.
 */
export function formatPath(events: MessageEvent[]): string {
  return events.map(stepLabel).join(" > ");
}

function stepLabel(e: MessageEvent): string {
  switch (e.type) {
    case "attempt":
      return `attempt ${e.attempt ?? "?"}`;
    case "delivered":
    case "responded":
      return e.latencyMs === undefined ? e.type : `${e.type} ${e.latencyMs}ms`;
    case "rejected":
    case "failed":
    case "deadlettered":
      return e.code ? `${e.type} ${e.code}` : e.type;
    default:
      return e.type;
  }
}

/** Steps after which nothing more happens to a message. */
export const FINAL_STEPS: ReadonlySet<MessageEvent["type"]> = new Set([
  "responded",
  "rejected",
  "deadlettered",
]);

function traceText(records: JournalRecord[]): string {
  const events = records.map((r) => r.event);
  const first = events[0]!;
  const service = events.find((e) => e.service)?.service;
  const provider = events.find((e) => e.provider)?.provider;
  const header = [
    `message ${first.id}`,
    service && `service ${service}`,
    first.agency && `from ${first.agency}`,
    provider && `to ${provider}`,
  ];
  const rows = records.map((r) => [
    formatTime(r.event.at),
    `+${r.event.at - first.at}ms`,
    r.event.type,
    r.event.attempt,
    r.event.node,
    stepDetail(r.event),
    `#${r.seq} ${r.hash.slice(0, 12)}`,
  ]);
  return [
    header.filter(Boolean).join("  "),
    `path: ${formatPath(events)}`,
    "",
    table(["TIME", "AFTER", "STEP", "ATTEMPT", "NODE", "DETAIL", "JOURNAL"], rows),
  ].join("\n");
}

function stepDetail(e: MessageEvent): string {
  const parts: string[] = [];
  if (e.code) parts.push(e.code);
  if (e.cause) parts.push(oneLine(e.cause));
  if (e.type === "delivered" && e.latencyMs !== undefined) parts.push(`call ${e.latencyMs}ms`);
  if (e.type === "responded" && e.latencyMs !== undefined) {
    parts.push(`${e.latencyMs}ms after accepted`);
  }
  if (e.bytes !== undefined) parts.push(`${e.bytes} bytes`);
  if (e.test) parts.push("test");
  return parts.join(", ") || "-";
}

function oneLine(text: string, maxChars = 100): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > maxChars ? `${flat.slice(0, maxChars - 3)}...` : flat;
}
