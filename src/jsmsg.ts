import type { DeliveryInfo, JsMsg, PullOptions } from "@nats-io/jetstream";
import type { Msg, MsgHdrs, NatsConnection } from "@nats-io/transport-node";

const encoder = new TextEncoder();
const ACK = encoder.encode("+ACK");
const NAK = encoder.encode("-NAK");
const WORKING = encoder.encode("+WPI");
const TERM = encoder.encode("+TERM");
const NANOS_PER_MS = 1_000_000;

/**
 * `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`, as
 * nats-server 2.9 sends.
 */
const SHORT_ACK_TOKENS = 9;
/**
 * The newer form adds `<domain>.<account hash>` after `$JS.ACK` (and may
 * add a token at the end).
 */
const LONG_ACK_TOKENS = 11;

/**
 * Whether `reply` is the ack subject of a JetStream delivery. Anything else
 * landing in a mailbox's inbox is not a message of its consumer.
 */
export function isAckSubject(reply: string | undefined): reply is string {
  return reply?.startsWith("$JS.ACK.") === true;
}

/** The delivery facts nats-server encodes in a message's ack subject. */
export function parseAckSubject(reply: string): DeliveryInfo {
  const tokens = reply.split(".");
  if (tokens[0] !== "$JS" || tokens[1] !== "ACK") throw notJetStream(reply);
  let rest: string[];
  let domain = "";
  let accountHash: string | undefined;
  if (tokens.length === SHORT_ACK_TOKENS) {
    rest = tokens.slice(2);
  } else if (tokens.length >= LONG_ACK_TOKENS) {
    domain = tokens[2] === "_" ? "" : tokens[2]!;
    accountHash = tokens[3];
    rest = tokens.slice(4);
  } else {
    throw notJetStream(reply);
  }
  const [stream, consumer, delivered, streamSeq, consumerSeq, timestamp, pending] = rest;
  const deliveryCount = Number(delivered);
  return {
    domain,
    account_hash: accountHash,
    stream: stream!,
    consumer: consumer!,
    deliveryCount,
    streamSequence: Number(streamSeq),
    deliverySequence: Number(consumerSeq),
    timestampNanos: Number(timestamp),
    pending: Number(pending),
    redelivered: deliveryCount > 1,
  };
}

function notJetStream(reply: string): Error {
  return new Error(`not a JetStream delivery (reply subject "${reply}")`);
}

/** The raw nanosecond timestamp token: exact, where `info.timestampNanos` is a rounded number. */
function timestampToken(reply: string): bigint {
  const tokens = reply.split(".");
  return BigInt(tokens[tokens.length === SHORT_ACK_TOKENS ? 7 : 9] ?? "0");
}

/**
 * A message a mailbox pulled over its own inbox, with the `JsMsg` interface
 * its owners already use. nats.js builds these only inside its own pull
 * iterators and does not export the constructor, so the mailbox, which reads
 * its inbox itself, makes its own. Acks go to the reply subject as nats.js
 * sends them; every answer but "working" is final, and later ones are dropped.
 */
export class PulledMsg implements JsMsg {
  private settled = false;
  private parsed: DeliveryInfo | undefined;

  constructor(
    private readonly msg: Msg,
    private readonly nc: NatsConnection,
    /** How long `ackAck` waits for the server's confirmation. */
    private readonly ackTimeoutMs: number,
  ) {}

  get subject(): string {
    return this.msg.subject;
  }

  get sid(): number {
    return this.msg.sid;
  }

  get data(): Uint8Array {
    return this.msg.data;
  }

  get headers(): MsgHdrs | undefined {
    return this.msg.headers;
  }

  get info(): DeliveryInfo {
    this.parsed ??= parseAckSubject(this.reply);
    return this.parsed;
  }

  get redelivered(): boolean {
    return this.info.deliveryCount > 1;
  }

  get seq(): number {
    return this.info.streamSequence;
  }

  get timestampNanos(): bigint {
    return timestampToken(this.reply);
  }

  get time(): Date {
    return new Date(Math.floor(this.info.timestampNanos / NANOS_PER_MS));
  }

  get timestamp(): string {
    return this.time.toISOString();
  }

  private get reply(): string {
    return this.msg.reply ?? "";
  }

  ack(): void {
    this.settle(ACK);
  }

  /** Back to the consumer, due again at once or after `delayMs`. */
  nak(delayMs?: number): void {
    if (!delayMs) {
      this.settle(NAK);
      return;
    }
    const delay = Math.round(delayMs * NANOS_PER_MS);
    this.settle(encoder.encode(`-NAK ${JSON.stringify({ delay })}`));
  }

  /** Restarts the ack wait; the message stays this owner's. */
  working(): void {
    if (!this.settled) this.msg.respond(WORKING);
  }

  term(reason = ""): void {
    this.settle(reason ? encoder.encode(`+TERM ${reason}`) : TERM);
  }

  /** Acks and asks the next messages of the consumer to `subject` at once. */
  next(subject: string, opts: Partial<PullOptions> = {}): void {
    const request: Record<string, unknown> = { batch: opts.batch || 1 };
    if (opts.no_wait) request.no_wait = true;
    if (opts.expires && opts.expires > 0) request.expires = opts.expires * NANOS_PER_MS;
    if (this.settled) return;
    this.settled = true;
    this.msg.respond(encoder.encode(`+NXT ${JSON.stringify(request)}`), { reply: subject });
  }

  /** Acks and waits until the server confirms it stored the ack. */
  async ackAck(opts?: Partial<{ timeout: number }>): Promise<boolean> {
    if (this.settled || !this.msg.reply) return false;
    this.settled = true;
    await this.nc.request(this.msg.reply, ACK, { timeout: opts?.timeout ?? this.ackTimeoutMs });
    return true;
  }

  json<T>(): T {
    return this.msg.json<T>();
  }

  string(): string {
    return this.msg.string();
  }

  private settle(payload: Uint8Array): void {
    if (this.settled) return;
    this.settled = true;
    this.msg.respond(payload);
  }
}
