// Steady load through the bus for failover tests and chaos runs: a consumer
// agency submits at a fixed rate, a provider answers, and every accepted
// request is checked to be answered once. Submissions refused or held up
// while a node fails are measured, since that is what clients feel.
import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { type AgencyClient, RequestFailedError } from "../src/client.ts";
import { decodeEnvelope } from "../src/envelope.ts";
import { STREAM, subject } from "../src/subjects.ts";

export interface LoadOptions {
  consumer: AgencyClient;
  service: string;
  /** Requests offered per second. */
  ratePerSec: number;
  /** Submits waiting for the bus at once; a tick past it offers nothing. Default 64. */
  maxInFlight?: number;
  /** Pause before a refused submit is sent again with the same id. Default 200 ms. */
  retryDelayMs?: number;
  /** A submission still refused after this long is abandoned (not accepted). Default 60 s. */
  giveUpMs?: number;
  /** Prefix of the message ids, unique per run. */
  idPrefix: string;
}

/** What a run of load saw. `lost` counts accepted requests never answered. */
export interface LoadReport {
  offered: number;
  accepted: number;
  responded: number;
  /** Answers beyond the first, received by the consumer application. */
  duplicates: number;
  lost: number;
  /** Submissions given up on: never accepted, so not lost either. */
  abandoned: number;
  /** Ticks skipped because `maxInFlight` submits were waiting. */
  skipped: number;
  /**
   * Submit attempts the bus refused with an error code (UNAVAILABLE while a
   * stream has no leader).
   */
  refusals: number;
  /** From the first refused attempt to the last; 0 when none was refused. */
  refusedWindowMs: number;
  /** Submit attempts that got no answer in time (sent through a server that died, say). */
  timeouts: number;
  /** Longest time one submission took, from its first attempt to its acceptance. */
  maxAcceptMs: number;
  /** Longest time between two acceptances while load was offered. */
  longestStallMs: number;
}

/**
 * Offers requests at a fixed rate; each is submitted with an id of its own
 * and retried with that id until accepted, so a retry after a lost reply
 * is de-duplicated by the bus and counted once here.
 */
export class SteadyLoad {
  private readonly accepted = new Set<string>();
  private readonly answers: Map<string, number>;
  private readonly pending = new Set<Promise<void>>();
  private seq = 0;
  private offered = 0;
  private abandoned = 0;
  private skipped = 0;
  private refusals = 0;
  private timeouts = 0;
  private firstRefusalAt: number | undefined;
  private lastRefusalAt: number | undefined;
  private maxAcceptMs = 0;
  private lastAcceptAt: number | undefined;
  private longestStallMs = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: LoadOptions) {
    this.answers = answersOf(opts.consumer);
  }

  async start(): Promise<void> {
    await this.opts.consumer.openReplies();
    const intervalMs = Math.max(5, Math.round(1_000 / this.opts.ratePerSec));
    this.timer = setInterval(() => this.tick(), intervalMs);
  }

  /** Stops offering and waits for the submissions under way to be accepted or given up. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  /** Waits until every accepted request is answered or `timeoutMs` passes. */
  async drain(timeoutMs: number, onProgress?: (line: string) => void): Promise<LoadReport> {
    await this.stop();
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && this.unanswered().length > 0) {
      await sleep(250);
      onProgress?.(`draining: ${this.progress()}`);
    }
    return this.report();
  }

  /** Accepted ids not answered yet. */
  unanswered(): string[] {
    return [...this.accepted].filter((id) => !this.answers.has(id));
  }

  acceptedIds(): ReadonlySet<string> {
    return this.accepted;
  }

  progress(): string {
    const responded = [...this.accepted].filter((id) => this.answers.has(id)).length;
    const counts = `accepted=${this.accepted.size} responded=${responded}`;
    return `offered=${this.offered} ${counts} refusals=${this.refusals}`;
  }

  report(): LoadReport {
    const responded = [...this.accepted].filter((id) => this.answers.has(id)).length;
    let duplicates = 0;
    for (const id of this.accepted) duplicates += Math.max(0, (this.answers.get(id) ?? 0) - 1);
    const { firstRefusalAt: first, lastRefusalAt: last } = this;
    return {
      offered: this.offered,
      accepted: this.accepted.size,
      responded,
      duplicates,
      lost: this.accepted.size - responded,
      abandoned: this.abandoned,
      skipped: this.skipped,
      refusals: this.refusals,
      timeouts: this.timeouts,
      refusedWindowMs: first !== undefined && last !== undefined ? last - first : 0,
      maxAcceptMs: Math.round(this.maxAcceptMs),
      longestStallMs: Math.round(this.longestStallMs),
    };
  }

  private tick(): void {
    if (this.pending.size >= (this.opts.maxInFlight ?? 64)) {
      this.skipped++;
      return;
    }
    this.offered++;
    const work = this.submitUntilAccepted(`${this.opts.idPrefix}-${this.seq++}`);
    this.pending.add(work);
    void work.finally(() => this.pending.delete(work));
  }

  private async submitUntilAccepted(id: string): Promise<void> {
    const started = performance.now();
    const giveUpAt = started + (this.opts.giveUpMs ?? 60_000);
    const payload = `<Request id="${id}"/>`;
    while (performance.now() < giveUpAt) {
      try {
        await this.opts.consumer.submit(this.opts.service, payload, { id });
        this.onAccepted(id, performance.now() - started);
        return;
      } catch (err) {
        this.onRefused(!(err instanceof RequestFailedError));
        await sleep(this.opts.retryDelayMs ?? 200);
      }
    }
    this.abandoned++;
  }

  private onAccepted(id: string, tookMs: number): void {
    const now = Date.now();
    this.accepted.add(id);
    this.maxAcceptMs = Math.max(this.maxAcceptMs, tookMs);
    if (this.lastAcceptAt !== undefined && this.timer) {
      this.longestStallMs = Math.max(this.longestStallMs, now - this.lastAcceptAt);
    }
    this.lastAcceptAt = now;
  }

  private onRefused(unanswered: boolean): void {
    const now = Date.now();
    if (unanswered) {
      this.timeouts++;
      return;
    }
    this.refusals++;
    this.firstRefusalAt ??= now;
    this.lastRefusalAt = now;
  }
}

const answerCounts = new WeakMap<AgencyClient, Map<string, number>>();

/**
 * Answers received by a consumer client, counted per request id. One
 * reader per client: two readers of `responses()` would split the answers.
 */
function answersOf(client: AgencyClient): Map<string, number> {
  const known = answerCounts.get(client);
  if (known) return known;
  const counts = new Map<string, number>();
  answerCounts.set(client, counts);
  void countAnswers(client, counts);
  return counts;
}

async function countAnswers(client: AgencyClient, counts: Map<string, number>) {
  for await (const reply of client.responses()) {
    reply.ack();
    const id = reply.envelope.correlationId;
    if (id) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
}

/**
 * Serves `service` as the provider agency: answers after `delayMs`, and
 * counts calls per request id (a call repeated after a broker node died is
 * allowed; the provider can tell by the id).
 */
export function countingProvider(
  provider: AgencyClient,
  service: string,
  delayMs = 20,
): Map<string, number> {
  const calls = new Map<string, number>();
  provider.provide(service, async (req) => {
    calls.set(req.id, (calls.get(req.id) ?? 0) + 1);
    await sleep(delayMs);
    return `<Response id="${req.id}"/>`;
  });
  return calls;
}

/**
 * How many answers REPLIES stores per request id for the client's agency: read
 * through an ordered consumer, so the check does not depend on the
 * consumer application's own de-duplication.
 */
export async function storedAnswerCounts(
  client: AgencyClient,
  timeoutMs = 10_000,
): Promise<Map<string, number>> {
  const js = jetstream(client.nc, { timeout: timeoutMs });
  const consumer = await js.consumers.get(STREAM.replies, {
    filter_subjects: subject.reply(client.agency),
    deliver_policy: DeliverPolicy.All,
  });
  const counts = new Map<string, number>();
  const pendingAtStart = (await consumer.info()).num_pending;
  if (pendingAtStart === 0) return counts;
  const messages = await consumer.consume({ max_messages: 256 });
  const timer = setTimeout(() => messages.stop(), timeoutMs);
  for await (const m of messages) {
    const id = decodeEnvelope(m.data).correlationId;
    if (id) counts.set(id, (counts.get(id) ?? 0) + 1);
    if (m.info.pending === 0) break;
  }
  clearTimeout(timer);
  messages.stop();
  return counts;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
