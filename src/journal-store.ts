import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import rocks, { type BatchOp, type RocksLevel } from "@nxtedition/rocksdb";
import { decodeValue, encodeValue } from "./envelope.ts";
import type { MessageEvent } from "./events.ts";

/** A journal record: one event, chained to the record before it. */
export interface JournalRecord {
  seq: number;
  /** Hex SHA-256 of the previous record, or "" for the first. */
  prev: string;
  hash: string;
  event: MessageEvent;
}

const SEQ_WIDTH = 16;
const pad = (n: number) => n.toString().padStart(SEQ_WIDTH, "0");
const key = {
  record: (seq: number) => `r!${pad(seq)}`,
  byMessage: (id: string, seq: number) => `m!${id}!${pad(seq)}`,
  head: "meta!head",
};

export function recordHash(prev: string, eventBytes: Uint8Array): string {
  return createHash("sha256").update(prev).update(eventBytes).digest("hex");
}

/**
 * The materialized journal of one node in RocksDB: records in arrival
 * order, each carrying the hash of the one before, and an index by message id.
 * Appends are serialized so the chain has one head.
 */
export class JournalStore {
  private head = { seq: 0, hash: "" };
  private tail: Promise<void> = Promise.resolve();

  private constructor(private readonly db: RocksLevel) {}

  static async open(dir: string): Promise<JournalStore> {
    mkdirSync(dir, { recursive: true });
    const db = new rocks.RocksLevel(dir, { keyEncoding: "utf8", valueEncoding: "view" });
    await db.open();
    const store = new JournalStore(db);
    const head = await db.get(key.head).catch(() => undefined);
    if (head) store.head = decodeValue(head) as { seq: number; hash: string };
    return store;
  }

  /** Appends events in order; resolves once they are durable. */
  append(events: MessageEvent[]): Promise<void> {
    const run = this.tail.then(() => this.write(events));
    this.tail = run.catch(() => {});
    return run;
  }

  private async write(events: MessageEvent[]): Promise<void> {
    const ops: BatchOp[] = [];
    let { seq, hash } = this.head;
    for (const event of events) {
      const eventBytes = encodeValue(event);
      const prev = hash;
      seq += 1;
      hash = recordHash(prev, eventBytes);
      ops.push({
        type: "put",
        key: key.record(seq),
        value: encodeValue({ seq, prev, hash, event }),
      });
      ops.push({ type: "put", key: key.byMessage(event.id, seq), value: new Uint8Array(0) });
    }
    ops.push({ type: "put", key: key.head, value: encodeValue({ seq, hash }) });
    await this.db.batch(ops);
    this.head = { seq, hash };
  }

  /** Every record of one message, in the order the steps happened. */
  async trace(messageId: string): Promise<JournalRecord[]> {
    const out: JournalRecord[] = [];
    for await (const k of this.db.keys({ gt: `m!${messageId}!`, lt: `m!${messageId}!~` })) {
      const seq = Number(k.slice(k.lastIndexOf("!") + 1));
      const record = await this.get(seq);
      if (record) out.push(record);
    }
    return out.sort((a, b) => a.event.at - b.event.at || a.seq - b.seq);
  }

  async get(seq: number): Promise<JournalRecord | undefined> {
    const bytes = await this.db.get(key.record(seq)).catch(() => undefined);
    return bytes ? (decodeValue(bytes) as JournalRecord) : undefined;
  }

  /** Records in sequence order, from `fromSeq` on. */
  async *records(fromSeq = 1): AsyncGenerator<JournalRecord> {
    for await (const [, value] of this.db.iterator({ gte: key.record(fromSeq), lt: "r!~" })) {
      yield decodeValue(value) as JournalRecord;
    }
  }

  get size(): number {
    return this.head.seq;
  }

  async close(): Promise<void> {
    await this.tail;
    await this.db.close();
  }
}
