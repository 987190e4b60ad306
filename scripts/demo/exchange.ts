// The demo's exchange: sends every example request through its consumer's
// adapter, reads each message's history back from the journal, and reports.
import type { DemoRequest } from "../../examples/messages.ts";
import { summarizeAnswer } from "../../examples/messages.ts";
import type { AdminClient } from "../../src/admin-client.ts";
import type { AgencyClient } from "../../src/client.ts";
import type { Envelope } from "../../src/envelope.ts";
import { ErrorCode, MagistralError, toMagistralError } from "../../src/errors.ts";
import type { MessageEvent } from "../../src/events.ts";
import { newMessageId } from "../../src/ids.ts";
import type { JournalRecord } from "../../src/journal-store.ts";
import { FINAL_STEPS, formatPath } from "../admin/trace.ts";

/** What became of one example request. */
export interface Outcome {
  request: DemoRequest;
  id: string;
  answer?: Envelope;
  error?: MagistralError;
  /** The message's journal history, once its final step is recorded. */
  events: MessageEvent[];
}

export interface Summary {
  /** Requests the bus accepted. */
  sent: number;
  responded: number;
  /** Accepted, but ended without a response (dead-lettered, expired). */
  failed: number;
  /** Accepted, and then neither answered nor failed: the one number that must be 0. */
  lost: number;
  /** Outcomes other than the example expects. */
  unexpected: number;
}

/** Longest a demo request may wait for its answer. */
const ANSWER_TIMEOUT_MS = 15_000;
/** Longest the journal may take to record a message's final step. */
const JOURNAL_TIMEOUT_MS = 5_000;

/** Sends every request at once, each through its sender's adapter. */
export function sendAll(clients: Map<string, AgencyClient>, requests: DemoRequest[]) {
  return Promise.all(requests.map((request) => send(clients.get(request.from)!, request)));
}

async function send(client: AgencyClient, request: DemoRequest): Promise<Outcome> {
  const id = newMessageId();
  const service = request.named ? request.service : undefined;
  try {
    const answer = await client.request(service, request.payload, {
      id,
      timeoutMs: ANSWER_TIMEOUT_MS,
    });
    return { request, id, answer, events: [] };
  } catch (err) {
    return { request, id, error: toMagistralError(err), events: [] };
  }
}

/** Reads each message's journal history, waiting for its final step to arrive. */
export async function traceAll(admin: AdminClient, outcomes: Outcome[]): Promise<void> {
  await Promise.all(
    outcomes.map(async (o) => {
      o.events = await finalTrace(admin, o.id);
    }),
  );
}

// Journal events travel in batches through the EVENTS stream, so the final
// step can land a little after the consumer already has its answer.
async function finalTrace(admin: AdminClient, id: string): Promise<MessageEvent[]> {
  const deadline = Date.now() + JOURNAL_TIMEOUT_MS;
  let events: MessageEvent[] = [];
  while (Date.now() < deadline) {
    events = await readTrace(admin, id);
    if (events.some((e) => FINAL_STEPS.has(e.type))) return events;
    await new Promise((r) => setTimeout(r, 50));
  }
  return events;
}

async function readTrace(admin: AdminClient, id: string): Promise<MessageEvent[]> {
  try {
    const records = await admin.call<JournalRecord[]>("message.trace", { id });
    return records.map((r) => r.event);
  } catch (err) {
    if (err instanceof MagistralError && err.code === ErrorCode.NOT_FOUND) return [];
    throw err;
  }
}

/** Prints each message's path and returns the counts. */
export function report(outcomes: Outcome[], say: (line: string) => void): Summary {
  const summary: Summary = { sent: 0, responded: 0, failed: 0, lost: 0, unexpected: 0 };
  for (const o of outcomes) {
    const accepted = o.events.some((e) => e.type === "accepted");
    if (accepted) summary.sent++;
    if (o.answer) summary.responded++;
    else if (accepted && ended(o)) summary.failed++;
    else if (accepted) summary.lost++;
    const expected = isExpected(o);
    if (!expected) summary.unexpected++;
    say(`  ${route(o)}: ${formatPath(o.events) || "(not in the journal)"}`);
    say(`      ${o.request.title} => ${result(o)}${expected ? "" : "  (NOT AS EXPECTED)"}`);
  }
  const refused = outcomes.filter((o) => o.events.some((e) => e.type === "rejected")).length;
  say(`demo: ${refused} refused by the bus, ${summary.failed} failed after acceptance`);
  if (summary.unexpected > 0) say(`demo: ${summary.unexpected} outcomes not as expected`);
  return summary;
}

function route(o: Outcome): string {
  const step = o.events.find((e) => e.type === "accepted" || e.type === "rejected");
  const service = step?.service ?? o.answer?.service ?? o.request.service;
  const provider = step?.provider ?? o.answer?.provider;
  const notes = [provider, o.request.named ? undefined : "by XML root"].filter(Boolean);
  return `${o.request.from} -> ${service}${notes.length ? ` (${notes.join(", ")})` : ""}`;
}

function ended(o: Outcome): boolean {
  return o.events.some((e) => e.type === "deadlettered" || e.type === "expired");
}

function isExpected(o: Outcome): boolean {
  if (o.request.expect === "response") return o.answer !== undefined;
  return o.error?.code === o.request.expect;
}

function result(o: Outcome): string {
  if (o.answer) return safeSummary(o);
  const e = o.error ?? new MagistralError(ErrorCode.INTERNAL, "no outcome");
  return `${e.code}: ${firstLine(e.message)}`;
}

function safeSummary(o: Outcome): string {
  try {
    return summarizeAnswer(o.request.service, o.answer!.payload);
  } catch {
    return `answer of ${o.answer!.payload.length} bytes`;
  }
}

function firstLine(text: string, maxChars = 110): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > maxChars ? `${flat.slice(0, maxChars - 3)}...` : flat;
}
