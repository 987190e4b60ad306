import { ErrorCode, MagistralError } from "./errors.ts";
import type { MessageEvent, MessageEventType } from "./events.ts";
import { isToken } from "./ids.ts";
import {
  INDEX,
  type JournalRecord,
  type JournalStore,
  seqOfIndexKey,
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
/** Index keys read for one page at most, so a filter matching little cannot make a page slow. */
const MAX_SCANNED_KEYS = 20_000;
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
 * other filters are checked on the records it yields.
 */
export async function searchJournal(store: JournalStore, q: JournalQuery): Promise<JournalPage> {
  const limit = Math.min(MAX_LIMIT, Math.max(1, q.limit ?? DEFAULT_LIMIT));
  const range = keyRange(q);
  const records: JournalRecord[] = [];
  let pending: number[] = [];
  let lastKey: string | undefined;
  let scanned = 0;
  let ended = true;

  for await (const key of store.db.keys(range)) {
    if (records.length >= limit || scanned >= MAX_SCANNED_KEYS) {
      ended = false;
      break;
    }
    pending.push(seqOfIndexKey(key));
    lastKey = key;
    scanned++;
    if (pending.length >= limit - records.length) {
      records.push(...(await store.getMany(pending)).filter((r) => matches(r.event, q)));
      pending = [];
    }
  }
  records.push(...(await store.getMany(pending)).filter((r) => matches(r.event, q)));
  const page: JournalPage = { records };
  if (!ended && lastKey) page.cursor = Buffer.from(lastKey).toString("base64url");
  return page;
}

function keyRange(q: JournalQuery) {
  const prefix = indexPrefix(q);
  const from = `${prefix}${timeKey(q.fromMs ?? 0)}`;
  const to = `${prefix}${timeKey(Math.min(q.toMs ?? MAX_TIME_MS, MAX_TIME_MS))}!~`;
  const after = q.cursor ? decodeCursor(q.cursor, prefix) : undefined;
  if (q.newestFirst) return { gte: from, ...(after ? { lt: after } : { lte: to }), reverse: true };
  return { ...(after ? { gt: after } : { gte: from }), lte: to };
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
  return true;
}

function decodeCursor(cursor: string, prefix: string): string {
  const key = Buffer.from(cursor, "base64url").toString();
  if (!key.startsWith(prefix)) throw badRequest("cursor belongs to another search");
  return key;
}

function badRequest(message: string) {
  return new MagistralError(ErrorCode.BAD_REQUEST, message);
}
