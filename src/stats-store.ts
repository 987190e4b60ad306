import { mkdirSync } from "node:fs";
import rocks, { type BatchOp, type RocksLevel } from "@nxtedition/rocksdb";
import type { Histogram } from "hdr-histogram-js";
import { decodeValue, encodeValue } from "./envelope.ts";
import { ErrorCode, MagistralError } from "./errors.ts";
import { ROCKS_OPTIONS } from "./rocks-options.ts";
import {
  addLatencies,
  type Cell,
  type CellKey,
  decodeCell,
  encodeCell,
  hasLatencies,
  MINUTE_MS,
  mergeCell,
  minuteKeyPrefix,
  newHistogram,
  parseCellKey,
  type StoredCell,
} from "./stats-rollup.ts";

export type Granularity = "minute" | "hour" | "day" | "all";
export type StatsGroupBy = "service" | "consumer" | "provider" | "outcome";

/** A statistics question: a time range cut into buckets, optionally filtered and grouped. */
export interface StatsQuery {
  /** Half-open range [fromMs, toMs) in epoch milliseconds, widened to whole minutes. */
  fromMs: number;
  toMs: number;
  granularity: Granularity;
  groupBy?: StatsGroupBy;
  service?: string;
  consumer?: string;
  provider?: string;
  outcome?: string;
}

export interface LatencySummary {
  count: number;
  meanMs: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** One bucket of one group. */
export interface StatsRow {
  fromMs: number;
  group?: string;
  /** Events by type: accepted, rejected, attempt, delivered, responded, failed... */
  counts: Record<string, number>;
  /** Error codes of refusals and failures. */
  codes: Record<string, number>;
  requestBytes: number;
  responseBytes: number;
  /** Provider call time of delivered requests. */
  callMs?: LatencySummary;
  /** From acceptance to the response stored for the consumer. */
  e2eMs?: LatencySummary;
}

interface Accumulator {
  row: StatsRow;
  call?: Histogram;
  e2e?: Histogram;
}

const GRANULARITY_MS: Record<Exclude<Granularity, "all">, number> = {
  minute: MINUTE_MS,
  hour: 3_600_000,
  day: 86_400_000,
};
/** Rows one query may produce, so a fine granularity over a long range is refused early. */
const MAX_ROWS = 20_000;
const META_SEQ = "meta!streamSeq";

/**
 * Per-minute rollups of journal events in RocksDB: one cell per minute,
 * service, consumer, provider and outcome, with counts, bytes, error codes
 * and an hdr latency histogram. Queries fold the cells of a range into
 * buckets and groups on demand.
 */
export class StatsStore {
  private applied = 0;
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(private readonly db: RocksLevel) {}

  static async open(dir: string): Promise<StatsStore> {
    mkdirSync(dir, { recursive: true });
    const db = new rocks.RocksLevel(dir, {
      ...ROCKS_OPTIONS,
      keyEncoding: "utf8",
      valueEncoding: "view",
    });
    await db.open();
    const store = new StatsStore(db);
    const [seq] = await db.getMany([META_SEQ]);
    if (seq) store.applied = decodeValue(seq) as number;
    return store;
  }

  /** The last EVENTS sequence whose events are counted on disk. */
  get streamSeq(): number {
    return this.applied;
  }

  /**
   * Adds cells to those on disk in one write batch, with the EVENTS sequence
   * they reach, so a batch redelivered after a crash is not counted twice.
   */
  flush(cells: Map<string, Cell>, streamSeq: number): Promise<void> {
    return this.serialize(async () => {
      const keys = [...cells.keys()];
      const existing = keys.length > 0 ? await this.db.getMany(keys) : [];
      const ops: BatchOp[] = keys.map((key, i) => {
        const cell = cells.get(key)!;
        const before = existing[i];
        const merged = before ? decodeCell(decodeValue(before) as StoredCell) : undefined;
        if (merged) mergeCell(merged, cell);
        return { type: "put", key, value: encodeValue(encodeCell(merged ?? cell)) };
      });
      const seq = Math.max(streamSeq, this.applied);
      ops.push({ type: "put", key: META_SEQ, value: encodeValue(seq) });
      // Synced: the batches it covers are acknowledged right after.
      await this.db.batch(ops, { sync: true });
      this.applied = seq;
    });
  }

  /**
   * Answers a query from the cells on disk plus `unflushed`, cells counted
   * in memory and not yet handed to `flush`. It runs after every flush
   * queued before it, so no cell is counted twice.
   *
   * LIMITATION: every minute cell of the range is read, and a cell of more
   * than 32 calls has its histogram decoded (about 30 µs each), so a month at
   * minute detail over many busy services takes seconds; there are no hourly
   * or daily rollups on disk.
   */
  query(q: StatsQuery, unflushed: Map<string, Cell> = new Map()): Promise<StatsRow[]> {
    return this.serialize(async () => {
      const acc = new Map<string, Accumulator>();
      const fromMinute = Math.floor(q.fromMs / MINUTE_MS);
      const toMinute = Math.ceil(q.toMs / MINUTE_MS);
      const range = { gte: minuteKeyPrefix(fromMinute), lt: minuteKeyPrefix(toMinute) };
      for await (const [key, value] of this.db.iterator(range)) {
        const k = parseCellKey(key);
        if (matches(k, q)) add(acc, q, k, decodeCell(decodeValue(value) as StoredCell));
      }
      for (const [key, cell] of unflushed) {
        const k = parseCellKey(key);
        if (k.minute >= fromMinute && k.minute < toMinute && matches(k, q)) add(acc, q, k, cell);
      }
      return [...acc.values()].map(finish).sort(byBucketThenGroup);
    });
  }

  private serialize<T>(work: () => Promise<T>): Promise<T> {
    const run = this.tail.then(work);
    this.tail = run.catch(() => {});
    return run;
  }

  async close(): Promise<void> {
    await this.tail;
    await this.db.close();
  }
}

function matches(k: CellKey, q: StatsQuery): boolean {
  return (
    (!q.service || k.service === q.service) &&
    (!q.consumer || k.consumer === q.consumer) &&
    (!q.provider || k.provider === q.provider) &&
    (!q.outcome || k.outcome === q.outcome)
  );
}

function add(acc: Map<string, Accumulator>, q: StatsQuery, k: CellKey, cell: Cell): void {
  const fromMs = bucketStart(k.minute * MINUTE_MS, q);
  const group = q.groupBy ? k[q.groupBy] : undefined;
  const id = `${fromMs}|${group ?? ""}`;
  let a = acc.get(id);
  if (!a) {
    if (acc.size >= MAX_ROWS) {
      throw new MagistralError(ErrorCode.BAD_REQUEST, "too many rows: use a coarser granularity");
    }
    a = { row: { fromMs, group, counts: {}, codes: {}, requestBytes: 0, responseBytes: 0 } };
    acc.set(id, a);
  }
  const { row } = a;
  row.counts[k.outcome] = (row.counts[k.outcome] ?? 0) + cell.count;
  for (const [code, n] of Object.entries(cell.codes)) row.codes[code] = (row.codes[code] ?? 0) + n;
  if (k.outcome === "accepted") row.requestBytes += cell.bytes;
  if (k.outcome === "responded") row.responseBytes += cell.bytes;
  if (!hasLatencies(cell)) return;
  if (k.outcome === "delivered") {
    a.call ??= newHistogram();
    addLatencies(a.call, cell);
  }
  if (k.outcome === "responded") {
    a.e2e ??= newHistogram();
    addLatencies(a.e2e, cell);
  }
}

function bucketStart(ms: number, q: StatsQuery): number {
  if (q.granularity === "all") return q.fromMs;
  const size = GRANULARITY_MS[q.granularity];
  return Math.floor(ms / size) * size;
}

function finish(a: Accumulator): StatsRow {
  if (a.call) a.row.callMs = summarize(a.call);
  if (a.e2e) a.row.e2eMs = summarize(a.e2e);
  if (a.row.group === undefined) delete a.row.group;
  return a.row;
}

export function summarize(h: Histogram): LatencySummary {
  return {
    count: h.totalCount,
    meanMs: Math.round(h.mean * 10) / 10,
    p50Ms: h.getValueAtPercentile(50),
    p95Ms: h.getValueAtPercentile(95),
    p99Ms: h.getValueAtPercentile(99),
    maxMs: h.maxValue,
  };
}

function byBucketThenGroup(a: StatsRow, b: StatsRow): number {
  return a.fromMs - b.fromMs || (a.group ?? "").localeCompare(b.group ?? "");
}

const GRANULARITIES: ReadonlySet<string> = new Set(["minute", "hour", "day", "all"]);
const GROUPS: ReadonlySet<string> = new Set(["service", "consumer", "provider", "outcome"]);

/**
 * Checks an admin request body; the range defaults to the last hour and
 * the granularity to minute.
 * @throws MagistralError BAD_REQUEST
 */
export function parseStatsQuery(body: Record<string, unknown>, now = Date.now()): StatsQuery {
  const bad = (message: string) => new MagistralError(ErrorCode.BAD_REQUEST, message);
  const q: StatsQuery = { fromMs: now - 3_600_000, toMs: now, granularity: "minute" };
  for (const name of ["fromMs", "toMs"] as const) {
    if (body[name] === undefined) continue;
    if (!Number.isFinite(body[name])) throw bad(`${name} must be epoch milliseconds`);
    q[name] = body[name] as number;
  }
  if (q.toMs <= q.fromMs) throw bad("toMs must be after fromMs");
  if (body.granularity !== undefined) {
    if (!GRANULARITIES.has(body.granularity as string))
      throw bad("granularity: minute, hour, day or all");
    q.granularity = body.granularity as Granularity;
  }
  if (body.groupBy !== undefined) {
    if (!GROUPS.has(body.groupBy as string))
      throw bad("groupBy: service, consumer, provider or outcome");
    q.groupBy = body.groupBy as StatsGroupBy;
  }
  for (const name of ["service", "consumer", "provider", "outcome"] as const) {
    if (body[name] === undefined) continue;
    if (typeof body[name] !== "string") throw bad(`${name} must be a string`);
    q[name] = body[name] as string;
  }
  return q;
}
