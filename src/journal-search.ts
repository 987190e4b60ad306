import { ErrorCode, MagistralError } from "./errors.ts";
import type { MessageEvent, MessageEventType } from "./events.ts";
import { isToken } from "./ids.ts";
import {
  INDEX,
  type JournalRecord,
  type JournalStore,
  POSTING_SPAN_MS,
  postingSeqs,
  timeKey,
} from "./journal-store.ts";

/** A search of one node's journal; every filter given must hold. */
export interface JournalQuery {
  service?: string;
  /** Consumer or provider agency of the message, or the agency a change was about. */
  agency?: string;
  /** Event type: accepted, rejected, delivered, failed, changed... */
  outcome?: MessageEventType;
  /** Inclusive range of event times, in epoch milliseconds. */
  fromMs?: number;
  toMs?: number;
  /** Records per page, 1 to 1000; default 100. */
  limit?: number;
  /** From the previous page, to continue after it. */
  cursor?: string;
  newestFirst?: boolean;
}

export interface JournalPage {
  records: JournalRecord[];
  /** Present when the search stopped before the end of the range: pass it to get the next page. */
  cursor?: string;
}

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1_000;
/** Records looked at for one page at most, so a filter matching little cannot make a page slow. */
const MAX_SCANNED_SEQS = 20_000;
/** The latest time an index key can hold (13 digits of epoch milliseconds). */
const MAX_TIME_MS = 10 ** 13 - 1;
const OUTCOMES: ReadonlySet<string> = new Set([
  "accepted",
  "rejected",
  "attempt",
  "delivered",
  "responded",
  "failed",
  "expired",
  "deadlettered",
  "replayed",
  "changed",
]);

/** Checks an admin request body. @throws MagistralError BAD_REQUEST */
export function parseJournalQuery(body: Record<string, unknown>): JournalQuery {
  const q: JournalQuery = {};
  for (const name of ["service", "agency"] as const) {
    if (body[name] === undefined) continue;
    if (!isToken(body[name])) throw badRequest(`${name} must be an id`);
    q[name] = body[name];
  }
  if (body.outcome !== undefined) {
    if (typeof body.outcome !== "string" || !OUTCOMES.has(body.outcome)) {
      throw badRequest(`outcome: one of ${[...OUTCOMES].join(", ")}`);
    }
    q.outcome = body.outcome as MessageEventType;
  }
  for (const name of ["fromMs", "toMs", "limit"] as const) {
    if (body[name] === undefined) continue;
    if (!Number.isInteger(body[name]) || (body[name] as number) < 0) {
      throw badRequest(`${name} must be a non-negative integer`);
    }
    q[name] = body[name] as number;
  }
  if (body.cursor !== undefined) {
    if (typeof body.cursor !== "string") throw badRequest("cursor must be a string");
    q.cursor = body.cursor;
  }
  if (body.newestFirst !== undefined) q.newestFirst = body.newestFirst === true;
  return q;
}

/**
 * One page of a search. The most selective index given is scanned over the
 * time range (service, then outcome, then agency, else time alone), and the
 * other filters are checked on the records it yields. Records come in the
 * order of their posting lists: by time, to within one write batch of the
 * journal where batches of several nodes overlap.
 *
 * LIMITATION: search order is by posting list (its earliest time), then by
 * time within it. Where the event batches of several broker nodes overlap
 * in time, a page can hold a record older than one of the page before: by
 * milliseconds usually (the nodes' event batching), by as long as a node's
 * events were held back when JetStream was unreachable. No record is
 * skipped or given twice. Strict order would cost a merge of the postings
 * over the whole range before the first page.
 */
export async function searchJournal(store: JournalStore, q: JournalQuery): Promise<JournalPage> {
  const limit = Math.min(MAX_LIMIT, Math.max(1, q.limit ?? DEFAULT_LIMIT));
  const prefix = indexPrefix(q);
  const after = q.cursor ? decodeCursor(q.cursor, prefix) : undefined;
  const records: JournalRecord[] = [];
  let pending: number[] = [];
  let scanned = 0;
  let stopped: Position | undefined;
  const take = async () => {
    records.push(...(await store.getMany(pending)).filter((r) => matches(r.event, q)));
    pending = [];
  };

  scan: for await (const [key, value] of store.db.iterator(keyRange(q, prefix, after))) {
    const seqs = postingSeqs(value);
    if (q.newestFirst) seqs.reverse();
    const from = after?.key === key ? after.index + 1 : 0;
    for (let i = from; i < seqs.length; i++) {
      if (records.length >= limit || scanned >= MAX_SCANNED_SEQS) {
        stopped = { key, index: i - 1 };
        break scan;
      }
      pending.push(seqs[i]!);
      scanned++;
      if (pending.length >= limit - records.length) await take();
    }
  }
  await take();
  const page: JournalPage = { records };
  if (stopped) page.cursor = encodeCursor(stopped);
  return page;
}

/** Where a page stopped: the posting list, and the last place in it (in scan order) taken. */
interface Position {
  key: string;
  index: number;
}

function keyRange(q: JournalQuery, prefix: string, after: Position | undefined) {
  // A posting list's key holds its earliest time: one that starts before
  // the range may still hold records inside it.
  const from = `${prefix}${timeKey(Math.max(0, (q.fromMs ?? 0) - POSTING_SPAN_MS))}`;
  const to = `${prefix}${timeKey(Math.min(q.toMs ?? MAX_TIME_MS, MAX_TIME_MS))}!~`;
  if (q.newestFirst) return { gte: from, lte: after?.key ?? to, reverse: true };
  return { gte: after?.key ?? from, lte: to };
}

function indexPrefix(q: JournalQuery): string {
  if (q.service) return `${INDEX.service}${q.service}!`;
  if (q.outcome) return `${INDEX.outcome}${q.outcome}!`;
  if (q.agency) return `${INDEX.agency}${q.agency}!`;
  return INDEX.time;
}

function matches(event: MessageEvent, q: JournalQuery): boolean {
  if (q.service && event.service !== q.service) return false;
  if (q.outcome && event.type !== q.outcome) return false;
  if (q.agency && event.agency !== q.agency && event.provider !== q.agency) return false;
  if (q.fromMs !== undefined && event.at < q.fromMs) return false;
  if (q.toMs !== undefined && event.at > q.toMs) return false;
  return true;
}

function encodeCursor(at: Position): string {
  return Buffer.from(`${at.key}\n${at.index}`).toString("base64url");
}

function decodeCursor(cursor: string, prefix: string): Position {
  const text = Buffer.from(cursor, "base64url").toString();
  const split = text.lastIndexOf("\n");
  const key = text.slice(0, split);
  const index = Number(text.slice(split + 1));
  if (split < 0 || !key.startsWith(prefix) || !Number.isInteger(index) || index < -1) {
    throw badRequest("cursor belongs to another search");
  }
  return { key, index };
}

function badRequest(message: string) {
  return new MagistralError(ErrorCode.BAD_REQUEST, message);
}
