import type { JetStreamClient } from "@nats-io/jetstream";
import { decodeValue, encodeValue } from "./envelope.ts";
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
  | "replayed"
  /** A registry, policy or agency change, journaled with who made it and what it was before. */
  | "changed";

/** What a `changed` event is about. */
export type ChangedEntity = "service" | "agency" | "policy";

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
  /** On failed: when the next attempt is due, if there is one. */
  nextAt?: number;
  test?: boolean;
  /** accepted: the request content, kept only as the service's journal retention allows. */
  payload?: Uint8Array;
  contentType?: string;
  headers?: Record<string, string>;
  /** accepted: the payload was larger than the journal keeps and was left out. */
  payloadOmitted?: boolean;
  /** changed: the kind and id of what changed, who changed it, and its value before and after. */
  entity?: ChangedEntity;
  key?: string;
  who?: string;
  before?: unknown;
  after?: unknown;
}

export interface EventSinkOptions {
  /** Events per published batch. */
  maxBatch?: number;
  /** Longest an event waits in the buffer. */
  flushMs?: number;
  /** Estimated bytes per published batch; kept under the server's max_payload of 1 MiB. */
  maxBatchBytes?: number;
}

/** What an event costs in a batch besides its payload: a generous bound on its other fields. */
const EVENT_OVERHEAD_BYTES = 1024;

/** Batches waiting to be stored before new ones are dropped (bounds memory in an outage). */
const MAX_PENDING_BATCHES = 2_000;

/**
 * Buffers journal events and publishes them to EVENTS in batches, so a
 * message's five steps cost a fraction of one publish instead of five.
 * A failed publish is retried with the same de-duplication id.
 */
export class EventSink {
  private buffer: MessageEvent[] = [];
  private bufferBytes = 0;
  private readonly taps: ((event: MessageEvent) => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private batchSeq = 0;
  private readonly boot = Date.now().toString(36);
  private inFlight = new Set<Promise<void>>();
  private closed = false;
  private readonly maxBatch: number;
  private readonly flushMs: number;
  private readonly maxBatchBytes: number;

  constructor(
    private readonly js: JetStreamClient,
    private readonly node: string,
    private readonly log: Logger,
    opts: EventSinkOptions = {},
  ) {
    this.maxBatch = opts.maxBatch ?? 256;
    this.flushMs = opts.flushMs ?? 20;
    this.maxBatchBytes = opts.maxBatchBytes ?? 768 * 1024;
  }

  /** Calls `listener` with every event emitted on this node (metrics); it must not throw. */
  tap(listener: (event: MessageEvent) => void): void {
    this.taps.push(listener);
  }

  emit(event: Omit<MessageEvent, "at" | "node">): void {
    const full = { ...event, at: Date.now(), node: this.node };
    const bytes = EVENT_OVERHEAD_BYTES + (event.payload?.length ?? 0);
    if (this.bufferBytes + bytes > this.maxBatchBytes) this.flush();
    this.buffer.push(full);
    this.bufferBytes += bytes;
    for (const listener of this.taps) listener(full);
    if (this.buffer.length >= this.maxBatch || this.bufferBytes >= this.maxBatchBytes) this.flush();
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
    this.bufferBytes = 0;
    const msgID = `${this.node}-${this.boot}-${++this.batchSeq}`;
    if (this.inFlight.size >= MAX_PENDING_BATCHES) {
      // JetStream has been unreachable long enough: memory is bounded, the journal is not.
      this.log.error({ events: batch.length }, "journal events dropped, too many batches pending");
      return;
    }
    const p = this.publish(batch, msgID).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  /** Flushes and waits until every batch is stored. */
  async drain(): Promise<void> {
    this.flush();
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  /** Flushes, gives pending batches up to `graceMs` to be stored, then stops retrying. */
  async close(graceMs = 5_000): Promise<void> {
    const timer = setTimeout(() => {
      this.closed = true;
    }, graceMs);
    await this.drain();
    clearTimeout(timer);
    this.closed = true;
  }

  // LIMITATION: a batch lives only in this node's memory until EVENTS stores
  // it. While JetStream is unreachable batches are retried without end, up to
  // MAX_PENDING_BATCHES; batches past that, and those of a node that dies or
  // is closed meanwhile, are lost: the journal then lacks those steps (the
  // messages themselves are safe in QUEUE and REPLIES).
  private async publish(batch: MessageEvent[], msgID: string): Promise<void> {
    const data = encodeValue(batch);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.js.publish(subject.events("msg", this.node), data, { msgID });
        return;
      } catch (err) {
        if (this.closed) {
          this.log.error({ err, events: batch.length }, "journal events dropped at close");
          return;
        }
        this.log.warn({ err, attempt }, "journal event publish failed, retrying");
        await new Promise((r) => setTimeout(r, Math.min(5_000, 100 * attempt)));
      }
    }
  }
}

/** The events of one EVENTS message body, or undefined when it is not a batch. */
export function decodeEventBatchBytes(data: Uint8Array): MessageEvent[] | undefined {
  try {
    const events = decodeValue(data);
    return Array.isArray(events) ? (events as MessageEvent[]) : undefined;
  } catch {
    return undefined;
  }
}
