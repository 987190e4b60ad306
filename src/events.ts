import type { JetStreamClient } from "@nats-io/jetstream";
import { encodeValue } from "./envelope.ts";
import type { ErrorCode } from "./errors.ts";
import type { Logger } from "./logger.ts";
import { subject } from "./subjects.ts";

export type MessageEventType =
  | "accepted"
  | "rejected"
  | "attempt"
  | "delivered"
  | "responded"
  | "failed"
  | "expired"
  | "deadlettered"
  | "replayed";

/** One step of one message, as journaled. */
export interface MessageEvent {
  type: MessageEventType;
  /** Message id. */
  id: string;
  /** Milliseconds since the epoch, on the node that saw the step. */
  at: number;
  node: string;
  service?: string;
  /** The consumer agency that sent the request. */
  agency?: string;
  provider?: string;
  attempt?: number;
  code?: ErrorCode;
  cause?: string;
  bytes?: number;
  /** Provider call time for delivered; accepted-to-responded time for responded. */
  latencyMs?: number;
  test?: boolean;
}

export interface EventSinkOptions {
  /** Events per published batch. */
  maxBatch?: number;
  /** Longest an event waits in the buffer. */
  flushMs?: number;
}

/**
 * Buffers journal events and publishes them to EVENTS in batches, so a
 * message's five steps cost a fraction of one publish instead of five.
 * A failed publish is retried with the same de-duplication id.
 */
export class EventSink {
  private buffer: MessageEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private batchSeq = 0;
  private readonly boot = Date.now().toString(36);
  private inFlight = new Set<Promise<void>>();
  private readonly maxBatch: number;
  private readonly flushMs: number;

  constructor(
    private readonly js: JetStreamClient,
    private readonly node: string,
    private readonly log: Logger,
    opts: EventSinkOptions = {},
  ) {
    this.maxBatch = opts.maxBatch ?? 256;
    this.flushMs = opts.flushMs ?? 20;
  }

  emit(event: Omit<MessageEvent, "at" | "node">): void {
    this.buffer.push({ ...event, at: Date.now(), node: this.node });
    if (this.buffer.length >= this.maxBatch) this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.flushMs);
      this.timer.unref();
    }
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.buffer.length === 0) return;
    const batch = this.buffer;
    this.buffer = [];
    const msgID = `${this.node}-${this.boot}-${++this.batchSeq}`;
    const p = this.publish(batch, msgID).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  /** Flushes and waits until every batch is stored. */
  async drain(): Promise<void> {
    this.flush();
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  private async publish(batch: MessageEvent[], msgID: string): Promise<void> {
    const data = encodeValue(batch);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.js.publish(subject.events("msg", this.node), data, { msgID });
        return;
      } catch (err) {
        if (attempt >= 20) {
          this.log.error({ err, events: batch.length }, "journal events dropped");
          return;
        }
        this.log.warn({ err, attempt }, "journal event publish failed, retrying");
        await new Promise((r) => setTimeout(r, Math.min(5_000, 100 * attempt)));
      }
    }
  }
}
