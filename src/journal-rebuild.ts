import { existsSync, readdirSync } from "node:fs";
import { DeliverPolicy } from "@nats-io/jetstream";
import { ErrorCode, MagistralError } from "./errors.ts";
import { decodeEventBatchBytes } from "./events.ts";
import { JournalStore } from "./journal-store.ts";
import type { Logger } from "./logger.ts";
import type { BusConnection } from "./nats.ts";
import { STREAM } from "./subjects.ts";

export interface RebuildReport {
  /** EVENTS messages replayed. */
  batches: number;
  records: number;
  /** Last EVENTS sequence applied. */
  streamSeq: number;
}

/**
 * Builds a journal afresh in `dir` by replaying EVENTS from the start of the
 * stream through an ordered consumer, up to the stream's last message at
 * the time of the call. Records, hashes and indexes come out as the journal
 * actor writes them, since both apply the same batches in stream order.
 * @throws MagistralError BAD_REQUEST when `dir` already holds files
 *
 * LIMITATION: EVENTS keeps 7 days; a rebuild after that starts at the oldest
 * event still stored, and its chain differs from a journal that saw more.
 */
export async function rebuildJournal(
  bus: BusConnection,
  dir: string,
  log?: Logger,
): Promise<RebuildReport> {
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    throw new MagistralError(ErrorCode.BAD_REQUEST, `${dir} is not empty: rebuild into a new dir`);
  }
  const { state } = await bus.jsm.streams.info(STREAM.events);
  const store = await JournalStore.open(dir);
  const report: RebuildReport = { batches: 0, records: 0, streamSeq: 0 };
  try {
    if (state.messages > 0) await replay(bus, store, state.last_seq, report, log);
  } finally {
    await store.close();
  }
  return report;
}

async function replay(
  bus: BusConnection,
  store: JournalStore,
  lastSeq: number,
  report: RebuildReport,
  log?: Logger,
): Promise<void> {
  const consumer = await bus.js.consumers.get(STREAM.events, {
    deliver_policy: DeliverPolicy.All,
  });
  const messages = await consumer.consume({ max_messages: 256 });
  for await (const msg of messages) {
    const events = decodeEventBatchBytes(msg.data);
    if (events) report.records += await store.append(events, msg.seq);
    else log?.warn({ seq: msg.seq }, "unreadable event batch skipped");
    report.batches++;
    report.streamSeq = msg.seq;
    if (msg.seq >= lastSeq) break;
  }
  messages.stop();
}
