import { type ApiError, JetStreamApiError } from "@nats-io/jetstream";
import {
  createInbox,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  NoRespondersError,
  headers as natsHeaders,
  type Payload,
  type Subscription,
  TimeoutError,
} from "@nats-io/transport-node";

/**
 * How often pending requests are checked against their deadline: a request
 * times out up to this much after its timeout. One sweep for all requests
 * costs less than a timer armed and cleared per request.
 */
const SWEEP_MS = 50;

/** Status of the header-only message nats-server sends when no one subscribes. */
const NO_RESPONDERS_STATUS = 503;

/** The JetStream publish timeout nats.js used for the bus (see `connectBus`). */
export const DURABLE_TIMEOUT_MS = 10_000;

const MSG_ID_HEADER = "Nats-Msg-Id";
const EXPECTED_STREAM_HEADER = "Nats-Expected-Stream";

export interface RequestOptions {
  timeoutMs: number;
  headers?: MsgHdrs;
}

export interface DurableOptions {
  /** Deduplication key: the stream stores one message per id within its window. */
  msgID: string;
  timeoutMs?: number;
  /** The publish fails unless this stream stores the subject. */
  expectedStream?: string;
}

/** What JetStream acknowledged: where the message is stored, or that it already was. */
export interface DurableAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

/** No reply in time; a `TimeoutError`, as nats.js raises for a request. */
export class RequestTimeoutError extends TimeoutError {
  constructor(
    readonly subject: string,
    timeoutMs: number,
  ) {
    super();
    this.message = `no reply on ${subject} within ${timeoutMs} ms`;
  }
}

/** A JetStream publish no stream listens to; a `NoRespondersError`, as for any request. */
export class NoStreamError extends NoRespondersError {
  constructor(subject: string) {
    super(subject);
    this.message = `no stream stores ${subject} (no responders)`;
  }
}

/** The requester closed, by itself or with its connection, before the reply came. */
export class RequesterClosedError extends Error {
  constructor(reason: string) {
    super(`request abandoned: ${reason}`);
    this.name = "RequesterClosedError";
  }
}

interface Pending {
  subject: string;
  timeoutMs: number;
  /** Epoch milliseconds after which the request fails. */
  deadline: number;
  resolve: (msg: Msg) => void;
  reject: (err: Error) => void;
}

interface PubAckBody {
  stream?: string;
  seq?: number;
  duplicate?: boolean;
  error?: ApiError;
}

/**
 * Request/reply over one inbox subscription, for the broker's hot path.
 * nats.js's own `request` builds, per request, an error with a stack trace
 * (even with `noAsyncTraces`), a timer and a deferred; this one keeps a map
 * entry and a promise, and times out by one periodic sweep. Replies go to
 * `<inbox prefix>.<random>.<counter>`, under the connection's inbox prefix,
 * so permissions that let it read its inbox still hold.
 */
export class Requester {
  private readonly prefix: string;
  private readonly pending = new Map<string, Pending>();
  private readonly sub: Subscription;
  private seq = 0;
  private sweeper: ReturnType<typeof setInterval> | undefined;
  private closedBy: string | undefined;

  constructor(
    private readonly nc: NatsConnection,
    inboxPrefix?: string,
  ) {
    this.prefix = `${createInbox(inboxPrefix)}.`;
    this.sub = nc.subscribe(`${this.prefix}*`, {
      callback: (err, msg) => (err ? this.failAll(err) : this.onReply(msg)),
    });
    nc.closed().then(
      () => this.stop("connection closed"),
      () => this.stop("connection closed"),
    );
  }

  /** Number of requests waiting for their reply. */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Publishes `data` to `subject` and resolves with the first reply. Rejects
   * with a `RequestTimeoutError`, with a `NoRespondersError` when no one
   * listens on `subject`, or with a `RequesterClosedError`.
   */
  request(subject: string, data: Payload, opts: RequestOptions): Promise<Msg> {
    if (this.closedBy !== undefined) {
      return Promise.reject(new RequesterClosedError(this.closedBy));
    }
    const key = (++this.seq).toString(36);
    const deadline = Date.now() + opts.timeoutMs;
    return new Promise<Msg>((resolve, reject) => {
      this.pending.set(key, { subject, timeoutMs: opts.timeoutMs, deadline, resolve, reject });
      this.startSweeping();
      // LIMITATION: a publish the server refuses for want of permission is not
      // matched to its request (nats.js's own request does); it fails at its timeout.
      try {
        this.nc.publish(subject, data, { reply: this.prefix + key, headers: opts.headers });
      } catch (err) {
        this.pending.delete(key);
        reject(err);
      }
    });
  }

  /**
   * A JetStream publish with a deduplication id. Rejects with a
   * `JetStreamApiError` when the stream refuses the message, a
   * `NoStreamError` when no stream stores `subject`, or as `request` does.
   */
  async publishDurable(subject: string, data: Payload, opts: DurableOptions): Promise<DurableAck> {
    const h = natsHeaders();
    h.set(MSG_ID_HEADER, opts.msgID);
    if (opts.expectedStream) h.set(EXPECTED_STREAM_HEADER, opts.expectedStream);
    const timeoutMs = opts.timeoutMs ?? DURABLE_TIMEOUT_MS;
    let reply: Msg;
    try {
      reply = await this.request(subject, data, { timeoutMs, headers: h });
    } catch (err) {
      throw err instanceof NoRespondersError ? new NoStreamError(subject) : err;
    }
    return parsePubAck(reply, subject);
  }

  /** Rejects every pending request and stops listening. Safe to call twice. */
  close(): void {
    if (this.closedBy !== undefined) return;
    this.stop("requester closed");
    if (!this.nc.isClosed()) this.sub.unsubscribe();
  }

  private stop(reason: string): void {
    this.closedBy ??= reason;
    this.failAll(new RequesterClosedError(this.closedBy));
  }

  private onReply(msg: Msg): void {
    const key = msg.subject.substring(this.prefix.length);
    const req = this.pending.get(key);
    // A reply after its request timed out (or a second reply) has no one to go to.
    if (!req) return;
    this.pending.delete(key);
    if (msg.data.length === 0 && msg.headers?.code === NO_RESPONDERS_STATUS) {
      req.reject(new NoRespondersError(req.subject));
    } else {
      req.resolve(msg);
    }
  }

  private failAll(err: Error): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    this.stopSweeping();
    for (const req of all) req.reject(err);
  }

  private startSweeping(): void {
    if (this.sweeper) return;
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    // Pending requests wait on the connection's socket, which keeps the process up.
    this.sweeper.unref();
  }

  private stopSweeping(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  private sweep(): void {
    if (this.pending.size === 0) {
      this.stopSweeping();
      return;
    }
    const now = Date.now();
    for (const [key, req] of this.pending) {
      if (req.deadline > now) continue;
      this.pending.delete(key);
      req.reject(new RequestTimeoutError(req.subject, req.timeoutMs));
    }
  }
}

/** The PubAck of a JetStream publish, or the stream's refusal as an error. */
function parsePubAck(msg: Msg, subject: string): DurableAck {
  const ack = msg.json<PubAckBody>();
  if (ack.error) throw new JetStreamApiError(ack.error);
  if (typeof ack.stream !== "string" || ack.stream === "" || typeof ack.seq !== "number") {
    throw new Error(`invalid JetStream ack for ${subject}`);
  }
  return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate === true };
}
