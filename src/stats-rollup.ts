import {
  build,
  decodeFromCompressedBase64,
  encodeIntoCompressedBase64,
  type Histogram,
} from "hdr-histogram-js";
import type { MessageEvent } from "./events.ts";

/** The dimensions one rollup cell counts: one minute of one combination. */
export interface CellKey {
  minute: number;
  service: string;
  /** The consumer agency. */
  consumer: string;
  provider: string;
  /** Event type: accepted, rejected, delivered, responded, failed... */
  outcome: string;
}

/**
 * Counts of one cell, and the latencies its events carried: provider call
 * time for delivered, accepted-to-responded for responded. A cell with few
 * latencies keeps them as they are (`values`); past MAX_RAW_LATENCIES it
 * holds a histogram (`latency`) instead.
 */
export interface Cell {
  count: number;
  bytes: number;
  /** Error codes of rejected, failed, expired and dead-lettered events. */
  codes: Record<string, number>;
  latency?: Histogram;
  values?: number[];
}

/** A cell as stored in RocksDB. */
export interface StoredCell {
  n: number;
  b: number;
  c?: Record<string, number>;
  /** hdr histogram, compressed and base64 encoded as hdr-histogram-js writes it. */
  h?: string;
  /** Or, for a cell with few, the latencies themselves in milliseconds. */
  v?: number[];
}

/**
 * Latencies a cell keeps as a list before it builds a histogram. A
 * histogram costs ~4 µs to build and ~30 µs each to encode and decode (it is
 * deflated); with 10,000 services most cells of a one-second flush hold one
 * or two latencies, and histograms were a sixth of the broker's event loop.
 */
const MAX_RAW_LATENCIES = 32;

export const MINUTE_MS = 60_000;
const MINUTE_WIDTH = 9;
/** Stands for a dimension an event does not have (a rejected request has no provider). */
export const NONE = "-";

export const CELL_PREFIX = "c!";

export function cellKey(k: CellKey): string {
  const minute = k.minute.toString().padStart(MINUTE_WIDTH, "0");
  return `${CELL_PREFIX}${minute}!${k.service}!${k.consumer}!${k.provider}!${k.outcome}`;
}

export function minuteKeyPrefix(minute: number): string {
  return `${CELL_PREFIX}${Math.max(0, minute).toString().padStart(MINUTE_WIDTH, "0")}`;
}

export function parseCellKey(key: string): CellKey {
  const [, minute, service, consumer, provider, outcome] = key.split("!");
  return {
    minute: Number(minute),
    service: service!,
    consumer: consumer!,
    provider: provider!,
    outcome: outcome!,
  };
}

/** The cell an event counts in; undefined for events that are not about messages. */
export function cellKeyOf(event: MessageEvent): string | undefined {
  if (event.type === "changed") return undefined;
  return cellKey({
    minute: Math.floor(event.at / MINUTE_MS),
    service: event.service ?? NONE,
    consumer: event.agency ?? NONE,
    provider: event.provider ?? NONE,
    outcome: event.type,
  });
}

export function newHistogram(): Histogram {
  // Two significant digits: percentiles within 1%, at a few KiB per open histogram.
  return build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: LATENCY_CEILING_MS,
    numberOfSignificantValueDigits: 2,
  });
}

export function emptyCell(): Cell {
  return { count: 0, bytes: 0, codes: {} };
}

/** Counts one event into its cell. */
export function countEvent(cell: Cell, event: MessageEvent): void {
  cell.count += 1;
  cell.bytes += event.bytes ?? 0;
  if (event.code) cell.codes[event.code] = (cell.codes[event.code] ?? 0) + 1;
  if (event.latencyMs !== undefined && event.latencyMs >= 0) {
    recordLatency(cell, Math.min(LATENCY_CEILING_MS, Math.max(1, Math.round(event.latencyMs))));
  }
}

/**
 * The longest latency a histogram holds. A histogram read back from disk
 * cannot grow, and one value past its range failed every later flush.
 *
 * LIMITATION: a call or response that took longer than an hour (an answer
 * to a request queued through a long outage) is counted as taking an hour:
 * percentiles and maxima above an hour read as one hour; counts are exact.
 */
export const LATENCY_CEILING_MS = 3_600_000;

function recordLatency(cell: Cell, ms: number): void {
  if (cell.latency) {
    cell.latency.recordValue(ms);
    return;
  }
  cell.values ??= [];
  cell.values.push(ms);
  if (cell.values.length > MAX_RAW_LATENCIES) histogramOf(cell);
}

/** The cell's latencies as a histogram, built from its list if it has one. */
export function histogramOf(cell: Cell): Histogram {
  if (!cell.latency) {
    cell.latency = newHistogram();
    for (const ms of cell.values ?? []) cell.latency.recordValue(ms);
    cell.values = undefined;
  }
  return cell.latency;
}

/** Adds the cell's latencies into `into`. */
export function addLatencies(into: Histogram, cell: Cell): void {
  if (cell.latency) into.add(cell.latency);
  for (const ms of cell.values ?? []) into.recordValue(ms);
}

/** Whether the cell carries any latency. */
export function hasLatencies(cell: Cell): boolean {
  return cell.latency !== undefined || (cell.values?.length ?? 0) > 0;
}

/** Adds `from` into `into`; `from` is left as it was. */
export function mergeCell(into: Cell, from: Cell): void {
  into.count += from.count;
  into.bytes += from.bytes;
  for (const [code, n] of Object.entries(from.codes))
    into.codes[code] = (into.codes[code] ?? 0) + n;
  if (from.latency) histogramOf(into).add(from.latency);
  for (const ms of from.values ?? []) recordLatency(into, ms);
}

export function encodeCell(cell: Cell): StoredCell {
  const stored: StoredCell = { n: cell.count, b: cell.bytes };
  if (Object.keys(cell.codes).length > 0) stored.c = cell.codes;
  if (cell.latency) stored.h = encodeIntoCompressedBase64(cell.latency);
  else if (cell.values?.length) stored.v = cell.values;
  return stored;
}

export function decodeCell(stored: StoredCell): Cell {
  const cell: Cell = { count: stored.n, bytes: stored.b, codes: { ...stored.c } };
  if (stored.h) cell.latency = decodeFromCompressedBase64(stored.h);
  else if (Array.isArray(stored.v)) cell.values = stored.v.filter(Number.isFinite);
  return cell;
}

/** A copy that later counting into the original does not change. */
export function copyCell(cell: Cell): Cell {
  const copy = emptyCell();
  mergeCell(copy, cell);
  return copy;
}
