import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import rocks, { type BatchOp, type RocksLevel } from "@nxtedition/rocksdb";
import { decodeValue, encodeValue } from "./envelope.ts";
import { ErrorCode, MagistralError } from "./errors.ts";
import type { MessageEvent } from "./events.ts";
import { ROCKS_OPTIONS } from "./rocks-options.ts";

/** A journal record: one event, chained to the record before it. */
export interface JournalRecord {
  seq: number;
  /** Hex SHA-256 of the previous record, or "" for the first. */
  prev: string;
  hash: string;
  event: MessageEvent;
}

/**
 * A record as stored: the event's MessagePack bytes exactly as hashed, so
 * verification never depends on re-encoding a decoded value the same way.
 */
export interface StoredRecord {
  seq: number;
  /** Raw SHA-256 of the previous record; empty for the first. */
  prev: Uint8Array;
  hash: Uint8Array;
  e: Uint8Array;
}

/** Where the chain stands: the last record, and the last EVENTS message applied. */
export interface JournalHead {
  seq: number;
  hash: Uint8Array;
  streamSeq: number;
}

/** What has been moved out to archive files, so the chain still links across them. */
export interface ArchiveHead {
  /** Last record in the archive files; the first record left in RocksDB follows it. */
  throughSeq: number;
  hash: Uint8Array;
  /** SHA-256 of the newest archive file; the next file names it as its predecessor. */
  digest: Uint8Array;
  file: string;
}

const SEQ_WIDTH = 12;
const TIME_WIDTH = 13;
const pad = (n: number, width: number) => n.toString().padStart(width, "0");
const seqKey = (seq: number) => pad(seq, SEQ_WIDTH);
/** Epoch milliseconds as an index key part, so keys sort by time. */
export const timeKey = (ms: number) => pad(Math.max(0, Math.floor(ms)), TIME_WIDTH);

/**
 * Key prefixes of the indexes. The message index has one key per record
 * (`m!<id>!<seq>`, value empty); the others hold posting lists: one key per
 * index value per write batch, `<prefix><value>!<time>!<first seq>`, whose
 * value is the seqs of that batch's records with that value, oldest first.
 */
export const INDEX = {
  service: "s!",
  agency: "a!",
  outcome: "o!",
  time: "t!",
  message: "m!",
} as const;

export const KEY = {
  record: (seq: number) => `r!${seqKey(seq)}`,
  recordEnd: "r!~",
  head: "meta!head",
  archive: "meta!archive",
  /** Who a message id was accepted from: one point read for the submit path's duplicate check. */
  accepted: (id: string) => `acc!${id}`,
  /** The posting keys one write batch made, so archiving can remove them with its records. */
  batch: (firstSeq: number) => `b!${seqKey(firstSeq)}`,
  batchEnd: "b!~",
};

/**
 * Widest span of event times in one posting list; its key carries the
 * earliest, so a search by time starts this much before its range.
 */
export const POSTING_SPAN_MS = 60_000;

/** SHA-256 of a record: the previous record's hash, then the event's bytes. */
export function recordHash(prev: Uint8Array, eventBytes: Uint8Array): Uint8Array {
  return createHash("sha256").update(prev).update(eventBytes).digest();
}

export const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

/** The message index key of one record. */
export function messageKey(id: string, seq: number): string {
  return `${INDEX.message}${id}!${seqKey(seq)}`;
}

/** The posting-list prefixes an event is found under: time, outcome, service, agencies. */
function postingPrefixes(event: MessageEvent): string[] {
  const prefixes: string[] = [INDEX.time, `${INDEX.outcome}${event.type}!`];
  if (event.service) prefixes.push(`${INDEX.service}${event.service}!`);
  if (event.agency) prefixes.push(`${INDEX.agency}${event.agency}!`);
  if (event.provider && event.provider !== event.agency) {
    prefixes.push(`${INDEX.agency}${event.provider}!`);
  }
  return prefixes;
}

interface PostingGroup {
  minAt: number;
  maxAt: number;
  entries: { at: number; seq: number }[];
}

/**
 * Groups a write batch's records into posting lists. Per record, five
 * index keys cost the journal more than half of its write time (a 256-event
 * batch: 26 µs of CPU per event with them, 11 µs with the message index
 * alone); one key per index value per batch costs next to nothing.
 */
class PostingLists {
  private readonly groups = new Map<string, PostingGroup[]>();

  add(event: MessageEvent, seq: number): void {
    for (const prefix of postingPrefixes(event)) {
      let list = this.groups.get(prefix);
      if (!list) {
        list = [];
        this.groups.set(prefix, list);
      }
      let group = list[list.length - 1];
      const minAt = Math.min(group?.minAt ?? event.at, event.at);
      const maxAt = Math.max(group?.maxAt ?? event.at, event.at);
      if (!group || maxAt - minAt >= POSTING_SPAN_MS) {
        group = { minAt: event.at, maxAt: event.at, entries: [] };
        list.push(group);
      } else {
        group.minAt = minAt;
        group.maxAt = maxAt;
      }
      group.entries.push({ at: event.at, seq });
    }
  }

  /** Each list's key and value. */
  *puts(): Generator<{ key: string; value: Uint8Array }> {
    for (const [prefix, list] of this.groups) {
      for (const group of list) {
        const firstSeq = group.entries[0]!.seq;
        group.entries.sort((a, b) => a.at - b.at || a.seq - b.seq);
        const seqs = group.entries.map((e) => e.seq);
        yield {
          key: `${prefix}${timeKey(group.minAt)}!${seqKey(firstSeq)}`,
          value: encodeValue(seqs),
        };
      }
    }
  }
}

/** The seq a message index key points to. */
export function seqOfIndexKey(key: string): number {
  return Number(key.slice(key.lastIndexOf("!") + 1));
}

/** The seqs of one posting list, oldest first. */
export function postingSeqs(value: Uint8Array): number[] {
  const seqs = decodeValue(value);
  return Array.isArray(seqs) ? (seqs as number[]) : [];
}

export function toJournalRecord(stored: StoredRecord): JournalRecord {
  return {
    seq: stored.seq,
    prev: hex(stored.prev),
    hash: hex(stored.hash),
    event: decodeValue(stored.e) as MessageEvent,
  };
}

export function decodeStored(bytes: Uint8Array): StoredRecord {
  return decodeValue(bytes) as StoredRecord;
}

const EMPTY = new Uint8Array(0);
/** Measured: 256 events (1,800 keys) per write took 2.6 ms synced, 2.8 ms not, on the test host. */
const SYNC = { sync: true };

/**
 * The materialized journal of one node in RocksDB: records in arrival
 * order, each carrying the hash of the one before, and indexes by message
 * id, service, agency, outcome and time. Writes are serialized so the chain
 * has one head; each EVENTS batch is one RocksDB write batch.
 */
export class JournalStore {
  private head: JournalHead = { seq: 0, hash: EMPTY, streamSeq: 0 };
  private archived: ArchiveHead | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  /**
   * EVENTS sequence of a batch whose write failed: later batches are refused
   * until it is written, so the skip of redelivered batches never skips it.
   * LIMITATION: if that batch leaves EVENTS before it is redelivered (the
   * stream's age limit), this node's journal stops until it is restarted.
   */
  private retryFirst: number | undefined;

  private constructor(readonly db: RocksLevel) {}

  static async open(dir: string): Promise<JournalStore> {
    mkdirSync(dir, { recursive: true });
    const db = new rocks.RocksLevel(dir, {
      ...ROCKS_OPTIONS,
      keyEncoding: "utf8",
      valueEncoding: "view",
    });
    await db.open();
    const store = new JournalStore(db);
    const [head, archived] = await db.getMany([KEY.head, KEY.archive]);
    if (head) store.head = decodeValue(head) as JournalHead;
    if (archived) store.archived = decodeValue(archived) as ArchiveHead;
    return store;
  }

  /**
   * Appends events in order; resolves with how many were written once they
   * are durable. A batch whose EVENTS sequence is not past the last one
   * applied is a redelivery of a batch already written, and is skipped.
   */
  append(events: MessageEvent[], streamSeq?: number): Promise<number> {
    return this.serialize(() => this.write(events, streamSeq));
  }

  /** Runs `work` after every write queued before it, and before any queued after. */
  serialize<T>(work: () => Promise<T>): Promise<T> {
    const run = this.tail.then(work);
    this.tail = run.catch(() => {});
    return run;
  }

  private async write(events: MessageEvent[], streamSeq?: number): Promise<number> {
    if (streamSeq !== undefined && streamSeq <= this.head.streamSeq) return 0;
    if (this.retryFirst !== undefined && streamSeq !== this.retryFirst) {
      throw new MagistralError(ErrorCode.UNAVAILABLE, "journal waits for a failed batch");
    }
    const { ops, head } = this.chain(events, streamSeq ?? this.head.streamSeq);
    try {
      // Synced: a batch is acknowledged to EVENTS after this, so it must survive a power loss.
      await this.db.batch(ops, SYNC);
    } catch (err) {
      if (streamSeq !== undefined) this.retryFirst ??= streamSeq;
      throw err;
    }
    if (streamSeq === this.retryFirst) this.retryFirst = undefined;
    this.head = head;
    return events.length;
  }

  /** The write batch that appends `events` to the chain, and the head it leads to. */
  private chain(events: MessageEvent[], streamSeq: number) {
    const ops: BatchOp[] = [];
    const postings = new PostingLists();
    let { seq, hash } = this.head;
    const firstSeq = seq + 1;
    for (const event of events) {
      const e = encodeValue(event);
      const prev = hash;
      seq += 1;
      hash = recordHash(prev, e);
      ops.push({ type: "put", key: KEY.record(seq), value: encodeValue({ seq, prev, hash, e }) });
      ops.push({ type: "put", key: messageKey(event.id, seq), value: EMPTY });
      postings.add(event, seq);
      if (event.type === "accepted") {
        const value = encodeValue({ agency: event.agency, service: event.service });
        ops.push({ type: "put", key: KEY.accepted(event.id), value });
      }
    }
    const keys: string[] = [];
    for (const put of postings.puts()) {
      ops.push({ type: "put", ...put });
      keys.push(put.key);
    }
    if (keys.length > 0) {
      const batch = encodeValue({ lastSeq: seq, keys });
      ops.push({ type: "put", key: KEY.batch(firstSeq), value: batch });
    }
    const head: JournalHead = { seq, hash, streamSeq };
    ops.push({ type: "put", key: KEY.head, value: encodeValue(head) });
    return { ops, head };
  }

  /**
   * The agency and service a message id was accepted from, if it was: kept
   * apart from the records, so it outlives their archiving.
   */
  async acceptance(id: string): Promise<{ agency?: string; service?: string } | undefined> {
    const bytes = await this.db.get(KEY.accepted(id)).catch(() => undefined);
    return bytes ? (decodeValue(bytes) as { agency?: string; service?: string }) : undefined;
  }

  /** `acceptance` of many ids in one read, in the order asked. */
  async acceptances(ids: string[]): Promise<({ agency?: string; service?: string } | undefined)[]> {
    const values = await this.db.getMany(ids.map(KEY.accepted));
    return values.map((bytes) =>
      bytes ? (decodeValue(bytes) as { agency?: string; service?: string }) : undefined,
    );
  }

  /** Every record of one message still in RocksDB, in the order the steps happened. */
  async trace(messageId: string): Promise<JournalRecord[]> {
    const prefix = `${INDEX.message}${messageId}!`;
    const seqs: number[] = [];
    for await (const k of this.db.keys({ gt: prefix, lt: `${prefix}~` }))
      seqs.push(seqOfIndexKey(k));
    const records = await this.getMany(seqs);
    return records.sort((a, b) => a.event.at - b.event.at || a.seq - b.seq);
  }

  async get(seq: number): Promise<JournalRecord | undefined> {
    const [record] = await this.getMany([seq]);
    return record;
  }

  /** The records of `seqs` that are still in RocksDB, in the order asked. */
  async getMany(seqs: number[]): Promise<JournalRecord[]> {
    if (seqs.length === 0) return [];
    const values = await this.db.getMany(seqs.map(KEY.record));
    return values.filter((v) => v !== undefined).map((v) => toJournalRecord(decodeStored(v)));
  }

  /** Records in sequence order, from `fromSeq` on. */
  async *records(fromSeq = 1): AsyncGenerator<JournalRecord> {
    for await (const stored of this.stored(fromSeq)) yield toJournalRecord(stored);
  }

  /** Records as stored, for verification and archiving. */
  async *stored(fromSeq = 1): AsyncGenerator<StoredRecord> {
    const range = { gte: KEY.record(fromSeq), lt: KEY.recordEnd };
    for await (const [, value] of this.db.iterator(range)) yield decodeStored(value);
  }

  /** Seq of the first record still in RocksDB (after those archived). */
  get firstSeq(): number {
    return (this.archived?.throughSeq ?? 0) + 1;
  }

  get archiveHead(): ArchiveHead | undefined {
    return this.archived;
  }

  /**
   * Removes records up to `archive.throughSeq` with their index keys and
   * records the archive head, in one write batch, after the archive file is
   * safely on disk. A write batch's posting lists go once all its records
   * have; until then a search skips the records already gone.
   */
  removeArchived(records: StoredRecord[], archive: ArchiveHead): Promise<void> {
    return this.serialize(async () => {
      const ops: BatchOp[] = [];
      for (const stored of records) {
        ops.push({ type: "del", key: KEY.record(stored.seq) });
        const event = decodeValue(stored.e) as MessageEvent;
        ops.push({ type: "del", key: messageKey(event.id, stored.seq) });
      }
      for await (const [key, value] of this.db.iterator({ lt: KEY.batchEnd, gte: "b!" })) {
        const batch = decodeValue(value) as { lastSeq: number; keys: string[] };
        if (batch.lastSeq > archive.throughSeq) break;
        for (const posting of batch.keys) ops.push({ type: "del", key: posting });
        ops.push({ type: "del", key });
      }
      ops.push({ type: "put", key: KEY.archive, value: encodeValue(archive) });
      await this.db.batch(ops, SYNC);
      this.archived = archive;
    });
  }

  /** Number of records ever appended, archived ones included. */
  get size(): number {
    return this.head.seq;
  }

  /** The last EVENTS stream sequence applied. */
  get streamSeq(): number {
    return this.head.streamSeq;
  }

  async close(): Promise<void> {
    await this.tail;
    await this.db.close();
  }
}
