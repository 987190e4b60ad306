import type { Logger } from "./logger.ts";

export interface WebhookOptions {
  timeoutMs?: number;
  attempts?: number;
  /** Alerts waiting to be posted before new ones are dropped. */
  maxQueued?: number;
}

/**
 * Posts alerts as JSON to an operator's HTTP endpoint, one at a time, with
 * a timeout and retries. Runs beside delivery and never blocks it: when the
 * endpoint is down, alerts queue up to a bound and then are dropped (they
 * stay in the ALERTS stream and the log).
 */
export class Webhook {
  private queue: unknown[] = [];
  private running = false;
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly maxQueued: number;

  constructor(
    private readonly url: string,
    private readonly log: Logger,
    opts: WebhookOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 5_000;
    this.attempts = opts.attempts ?? 3;
    this.maxQueued = opts.maxQueued ?? 1_000;
  }

  send(body: unknown): void {
    if (this.queue.length >= this.maxQueued) {
      this.log.warn({ url: this.url }, "webhook queue full, alert not posted");
      return;
    }
    this.queue.push(body);
    if (!this.running) void this.drain();
  }

  private async drain() {
    this.running = true;
    while (this.queue.length > 0) {
      await this.post(this.queue.shift());
    }
    this.running = false;
  }

  private async post(body: unknown) {
    for (let attempt = 1; attempt <= this.attempts; attempt++) {
      try {
        const res = await fetch(this.url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        if (res.ok) return;
        this.log.warn({ status: res.status, attempt }, "webhook refused alert");
      } catch (err) {
        this.log.warn({ err, attempt }, "webhook unreachable");
      }
      await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
    }
  }
}
