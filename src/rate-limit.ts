import type { KV } from "@nats-io/kv";
import { decodeValue, encodeValue } from "./envelope.ts";
import { ErrorCode, MagistralError } from "./errors.ts";
import type { Logger } from "./logger.ts";
import type { BusConnection } from "./nats.ts";
import { BUCKET } from "./subjects.ts";

/** The limits of one consumer on one service. */
export interface LimitRule {
  /** Tokens per second; 0: no rate limit. */
  ratePerSecond: number;
  /** Bucket size: requests that may come at once after an idle time. */
  burst: number;
  /** Requests per UTC day; 0: no quota. */
  dailyQuota: number;
}

/**
 * Shared state of one consumer on one service, one KV key. The token bucket
 * is kept as GCRA's theoretical arrival time: the bucket is full when
 * `tatMs` is in the past, and each request moves it one interval on.
 */
interface LimitState {
  tatMs: number;
  /** UTC day number (`ms / DAY_MS`) that `used` counts. */
  day: number;
  used: number;
}

interface Known {
  state: LimitState;
  /** KV revision of `state`; 0 when the key does not exist yet. */
  revision: number;
}

interface Waiter {
  resolve(): void;
  reject(err: MagistralError): void;
}

type Verdict = true | "rate" | "quota";

const DAY_MS = 24 * 3600_000;
const CAS_ATTEMPTS = 8;
const KNOWN_LIMIT = 50_000;

/**
 * Rate limits and daily quotas shared by every broker node through the
 * `mg_limits` KV bucket. Each admitted request is committed by a
 * compare-and-set on its key's revision, so no two nodes spend the same
 * token. Requests waiting on one key are decided together in one write.
 */
export class RateLimiter {
  private kv: Promise<KV> | undefined;
  private readonly known = new Map<string, Known>();
  private readonly waiting = new Map<string, Waiter[]>();

  constructor(
    private readonly bus: BusConnection,
    private readonly log: Logger,
  ) {}

  /**
   * Refuses at once, with no I/O, when this node's last view of the key
   * already refuses. Other nodes only ever move a key's state forward within
   * a day, so a refusal by an older view is a refusal by the current one.
   * @throws MagistralError RATE_LIMITED or QUOTA_EXCEEDED
   */
  precheck(service: string, agency: string, rule: LimitRule, nowMs = Date.now()): void {
    const known = this.known.get(limitKey(service, agency));
    if (!known) return;
    const { verdicts } = decide(known.state, 1, rule, nowMs);
    if (verdicts[0] !== true) throw refusal(verdicts[0]!, known.state, rule, nowMs);
  }

  /**
   * Spends one request of the consumer's limits.
   * @throws MagistralError RATE_LIMITED, QUOTA_EXCEEDED, or UNAVAILABLE when
   *   the shared state cannot be read or written
   */
  take(service: string, agency: string, rule: LimitRule): Promise<void> {
    const key = limitKey(service, agency);
    return new Promise<void>((resolve, reject) => {
      const queue = this.waiting.get(key);
      if (queue) {
        queue.push({ resolve, reject });
        return;
      }
      this.waiting.set(key, [{ resolve, reject }]);
      void this.drain(key, rule);
    });
  }

  /** Decides the waiting requests of `key` in batches until none wait. */
  private async drain(key: string, rule: LimitRule): Promise<void> {
    for (;;) {
      const batch = this.waiting.get(key) ?? [];
      if (batch.length === 0) {
        this.waiting.delete(key);
        return;
      }
      this.waiting.set(key, []);
      await this.decideBatch(key, rule, batch);
    }
  }

  private async decideBatch(key: string, rule: LimitRule, batch: Waiter[]): Promise<void> {
    for (let attempt = 1; attempt <= CAS_ATTEMPTS; attempt++) {
      try {
        const known = this.known.get(key) ?? (await this.load(key));
        const nowMs = Date.now();
        const { state, verdicts } = decide(known.state, batch.length, rule, nowMs);
        if (verdicts.some((v) => v === true)) await this.store(key, known, state);
        verdicts.forEach((verdict, i) => {
          if (verdict === true) batch[i]!.resolve();
          else batch[i]!.reject(refusal(verdict, state, rule, nowMs));
        });
        return;
      } catch (err) {
        // Most often another node wrote the key first: read it again and decide anew.
        this.known.delete(key);
        if (attempt === CAS_ATTEMPTS) {
          this.log.warn({ err, key }, "rate limit state not updated");
          const failure = new MagistralError(
            ErrorCode.UNAVAILABLE,
            "rate limit state unavailable",
            {
              cause: err,
            },
          );
          for (const w of batch) w.reject(failure);
        }
      }
    }
  }

  private async load(key: string): Promise<Known> {
    const kv = await this.bucket();
    const entry = await kv.get(key);
    const known: Known =
      entry?.operation === "PUT" && entry.value.length > 0
        ? { state: decodeValue(entry.value) as LimitState, revision: entry.revision }
        : { state: { tatMs: 0, day: 0, used: 0 }, revision: 0 };
    this.remember(key, known);
    return known;
  }

  private async store(key: string, known: Known, state: LimitState): Promise<void> {
    const kv = await this.bucket();
    const bytes = encodeValue(state);
    const revision =
      known.revision === 0
        ? await kv.create(key, bytes)
        : await kv.update(key, bytes, known.revision);
    this.remember(key, { state, revision });
  }

  private remember(key: string, known: Known): void {
    if (this.known.size >= KNOWN_LIMIT && !this.known.has(key)) this.known.clear();
    this.known.set(key, known);
  }

  private bucket(): Promise<KV> {
    this.kv ??= this.bus.kvm.open(BUCKET.limits).catch((err) => {
      this.kv = undefined;
      throw err;
    });
    return this.kv;
  }
}

function limitKey(service: string, agency: string): string {
  return `${service}.${agency}`;
}

/**
 * The verdicts for `count` requests arriving at `nowMs` in order, and the
 * state after the admitted ones. A request refused by its quota spends no
 * rate token; a request refused by its rate spends no quota.
 * LIMITATION: `nowMs` is this node's clock; nodes whose clocks differ by δ
 * admit up to δ × rate more, and the quota's day turns by each node's clock.
 */
function decide(before: LimitState, count: number, rule: LimitRule, nowMs: number) {
  const today = Math.floor(nowMs / DAY_MS);
  const intervalMs = rule.ratePerSecond > 0 ? 1000 / rule.ratePerSecond : 0;
  const toleranceMs = intervalMs * (rule.burst - 1);
  const state: LimitState = {
    tatMs: Math.max(before.tatMs, nowMs),
    day: today,
    used: before.day === today ? before.used : 0,
  };
  const verdicts: Verdict[] = [];
  for (let i = 0; i < count; i++) {
    if (rule.dailyQuota > 0 && state.used >= rule.dailyQuota) verdicts.push("quota");
    else if (intervalMs > 0 && state.tatMs - nowMs > toleranceMs) verdicts.push("rate");
    else {
      state.tatMs += intervalMs;
      state.used++;
      verdicts.push(true);
    }
  }
  return { state, verdicts };
}

function refusal(
  verdict: Exclude<Verdict, true>,
  state: LimitState,
  rule: LimitRule,
  nowMs: number,
) {
  if (verdict === "quota") {
    return new MagistralError(
      ErrorCode.QUOTA_EXCEEDED,
      `daily quota of ${rule.dailyQuota} requests used; it renews at 00:00 UTC`,
    );
  }
  const intervalMs = 1000 / rule.ratePerSecond;
  const waitMs = Math.ceil(Math.max(state.tatMs, nowMs) - nowMs - intervalMs * (rule.burst - 1));
  return new MagistralError(
    ErrorCode.RATE_LIMITED,
    `over ${rule.ratePerSecond} requests per second; send again in ${Math.max(1, waitMs)}ms`,
  );
}
