import type { BrokerNode } from "../../src/broker.ts";
import type { MessageEventType } from "../../src/events.ts";
import type { JournalRecord } from "../../src/journal-store.ts";
import { waitFor } from "./bus.ts";

/**
 * Waits until the broker's journal holds a record of `type` for message `id`
 * and returns the message's records. Events travel through EVENTS before
 * they reach RocksDB, so this flushes and polls.
 */
export async function journaled(
  broker: BrokerNode,
  id: string,
  type: MessageEventType,
  timeoutMs = 10_000,
): Promise<JournalRecord[]> {
  let records: JournalRecord[] = [];
  await waitFor(async () => {
    await broker.flushEvents();
    records = await broker.trace(id);
    return records.some((r) => r.event.type === type);
  }, timeoutMs);
  return records;
}
