import type { Command } from "commander";
import type { DeadLetter } from "../../src/deadletter.ts";
import type { AdminContext } from "./context.ts";
import { formatTime, keyValues, table } from "./output.ts";

interface TargetOptions {
  service?: string;
  all?: boolean;
}

/** `dlq list|show|replay|purge`: the dead letters of the bus. */
export function register(program: Command, ctx: AdminContext): void {
  const dlq = program.command("dlq").description("dead letters: requests the bus gave up on");

  dlq
    .command("list")
    .description("list dead letters, oldest first")
    .option("--service <id>", "only this service's")
    .option("--limit <n>", "at most this many", Number, 100)
    .action(async (opts: { service?: string; limit: number }) => {
      const letters = await ctx.call<DeadLetter[]>("dlq.list", opts);
      ctx.print(letters, listTable);
    });

  dlq
    .command("show <seq>")
    .description("one dead letter with its reason and journal history")
    .action(async (seq: string) => {
      const letter = await ctx.call<DeadLetter>("dlq.show", { seq: Number(seq) });
      const history = await ctx.call<unknown[]>("message.trace", { id: letter.id }).catch(() => []);
      ctx.print({ ...letter, history }, showText);
    });

  dlq
    .command("replay [seq]")
    .description(
      "put dead letters back on their queue, ids unchanged (one seq, --service or --all)",
    )
    .option("--service <id>", "every dead letter of this service")
    .option("--all", "every dead letter")
    .action(async (seq: string | undefined, opts: TargetOptions) => {
      const result = await ctx.call<{ replayed: string[] }>("dlq.replay", target(seq, opts));
      ctx.print(result, (r) => `replayed ${r.replayed.length}: ${r.replayed.join(" ")}`.trim());
    });

  dlq
    .command("purge [seq]")
    .description("delete dead letters for good (one seq, --service or --all)")
    .option("--service <id>", "every dead letter of this service")
    .option("--all", "every dead letter")
    .action(async (seq: string | undefined, opts: TargetOptions) => {
      const result = await ctx.call<{ purged: number }>("dlq.purge", target(seq, opts));
      ctx.print(result, (r) => `purged ${r.purged}`);
    });
}

function target(seq: string | undefined, opts: TargetOptions): Record<string, unknown> {
  if (seq !== undefined) return { seq: Number(seq) };
  return { service: opts.service, all: opts.all === true };
}

function listTable(letters: DeadLetter[]): string {
  return table(
    ["SEQ", "SERVICE", "PROVIDER", "MESSAGE", "CONSUMER", "REASON", "ATTEMPTS", "DEAD AT"],
    letters.map((l) => [
      l.seq,
      l.service,
      l.provider,
      l.id,
      l.consumer,
      l.reason,
      l.attempts,
      formatTime(l.deadAt),
    ]),
  );
}

function showText(letter: DeadLetter & { history: unknown[] }): string {
  const head = keyValues([
    ["seq", letter.seq],
    ["message", letter.id],
    ["service", letter.service],
    ["provider", letter.provider],
    ["consumer", letter.consumer],
    ["reason", `${letter.reason}: ${letter.reasonMessage}`],
    ["attempts", letter.attempts],
    ["dead at", formatTime(letter.deadAt)],
    ["payload", `${letter.envelope.payloadBytes} bytes ${letter.envelope.contentType ?? ""}`],
  ]);
  const steps = (letter.history as { event: HistoryEvent }[])
    .map((r) => stepLine(r.event))
    .join("\n");
  return steps ? `${head}\nhistory:\n${steps}` : head;
}

interface HistoryEvent {
  type: string;
  at: number;
  attempt?: number;
  code?: string;
}

function stepLine(e: HistoryEvent): string {
  const parts = [formatTime(e.at), e.type, e.attempt, e.code].filter((p) => p !== undefined);
  return `  ${parts.join("  ")}`;
}
