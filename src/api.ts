import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import type { Msg, Subscription } from "@nats-io/transport-node";
import { expiresAt, REPLAY_HEADER } from "./delivery.ts";
import {
  decodeEnvelope,
  decodeValue,
  type Envelope,
  encodeEnvelope,
  encodeValue,
} from "./envelope.ts";
import { ErrorCode, MagistralError, toMagistralError } from "./errors.ts";
import { isMessageId, newMessageId } from "./ids.ts";
import { retainedContent } from "./journal-retention.ts";
import type { JournalThread } from "./journal-thread.ts";
import { type MessageStatus, statusOf } from "./message-status.ts";
import type { NodeContext } from "./node-context.ts";
import { PolicyGate } from "./policy.ts";
import { providersOf, type ServiceDef } from "./registry.ts";
import type { RegistryView } from "./registry-view.ts";
import {
  agencyOfApiSubject,
  BROKER_QUEUE_GROUP,
  consumerName,
  lane,
  STREAM,
  subject,
} from "./subjects.ts";

/** Reply of `mg.api.<agency>.submit`. */
export type SubmitReply =
  | { ok: true; id: string; service: string; duplicate: boolean }
  | { ok: false; id?: string; error: { code: ErrorCode; message: string; retryable: boolean } };

/** How far ahead of this node's clock a sender's clock may be. */
const MAX_CLOCK_AHEAD_MS = 5 * 60_000;

/** How often, and how far apart, an unknown id is looked up again for `status`. */
const STATUS_LOOKS = 4;
const STATUS_LOOK_GAP_MS = 40;

/** Submits being persisted at once by this node; past it, submits are refused as UNAVAILABLE. */
const MAX_SUBMITS_IN_FLIGHT = 4_096;

/**
 * The bus's API for agencies, `mg.api.<agency>.<op>`, answered by every
 * broker node in one queue group. The agency is always the subject's token.
 */
export class AgencyApi {
  private subs: Subscription[] = [];
  private inFlight = 0;
  private readonly policy: PolicyGate;

  constructor(
    private readonly ctx: NodeContext,
    private readonly view: RegistryView,
    private readonly journal: Pick<JournalThread, "acceptance" | "trace">,
  ) {
    this.policy = new PolicyGate(ctx);
  }

  start(): void {
    const { nc } = this.ctx.bus;
    const opts = { queue: BROKER_QUEUE_GROUP };
    this.subs.push(
      nc.subscribe(subject.apiWildcard("submit"), {
        ...opts,
        callback: (_e, m) => this.onSubmit(m),
      }),
      nc.subscribe(subject.apiWildcard("open"), { ...opts, callback: (_e, m) => this.onOpen(m) }),
      nc.subscribe(subject.apiWildcard("status"), {
        ...opts,
        callback: (_e, m) => this.onStatus(m),
      }),
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.subs.map((s) => s.drain()));
  }

  private onSubmit(m: Msg): void {
    if (this.inFlight >= MAX_SUBMITS_IN_FLIGHT) {
      respond(m, { ok: false, error: busy() });
      return;
    }
    this.inFlight++;
    this.submit(m)
      .then((reply) => respond(m, reply))
      .finally(() => this.inFlight--);
  }

  /** Checks, persists, and only then answers. Never rejects. */
  private async submit(m: Msg): Promise<SubmitReply> {
    const agency = agencyOfApiSubject(m.subject)!;
    let env: Envelope | undefined;
    let def: ServiceDef | undefined;
    try {
      env = decodeEnvelope(m.data);
      if (env.kind !== "request")
        throw new MagistralError(ErrorCode.BAD_ENVELOPE, "submit takes a request");
      const sender = this.view.agency(agency);
      if (!sender) {
        throw new MagistralError(ErrorCode.ACCESS_DENIED, `agency ${agency} is not registered`);
      }
      const earlier = await this.earlierOutcome(agency, env.id);
      if (earlier) return earlier;
      def = this.view.resolve(env.service, env.payload);
      this.policy.authorize(sender, def, env);
      await this.check(def, env);
      await this.policy.admit(sender, def);
      return await this.persist(agency, def, env);
    } catch (err) {
      const error = toMagistralError(err);
      const id = env?.id ?? newMessageId();
      this.ctx.events.emit({
        type: "rejected",
        id,
        agency,
        service: def?.id ?? env?.service,
        code: error.code,
        cause: error.message,
        test: env?.test,
      });
      if (error.code === ErrorCode.INTERNAL) this.ctx.log.error({ err, agency }, "submit failed");
      // Undecodable input gets a journal id of the bus's choosing; the reply
      // carries it, so the rejection can still be traced.
      return { ok: false, id, error: error.toWire() };
    }
  }

  /**
   * The first outcome of a message id already accepted, read from this node's
   * journal: a repeated submit never makes a second delivery, even after the
   * stream's de-duplication window has passed.
   */
  private async earlierOutcome(agency: string, id: string): Promise<SubmitReply | undefined> {
    // One point read: a prefix scan of the message's records here cost about
    // a sixth of the broker's CPU per request in `npm run bench`.
    const accepted = await this.journal.acceptance(id);
    if (!accepted) return undefined;
    if (accepted.agency !== agency) {
      throw new MagistralError(ErrorCode.DUPLICATE_ID, "message id already in use, choose another");
    }
    return { ok: true, id, service: accepted.service!, duplicate: true };
  }

  private async check(def: ServiceDef, env: Envelope): Promise<void> {
    if (def.status !== "active") {
      throw new MagistralError(ErrorCode.SERVICE_SUSPENDED, `service ${def.id} is ${def.status}`);
    }
    if (env.payload.length > def.maxPayloadBytes) {
      throw new MagistralError(
        ErrorCode.PAYLOAD_TOO_LARGE,
        `payload of ${env.payload.length} bytes exceeds ${def.maxPayloadBytes}`,
      );
    }
    if (env.ttlMs !== undefined && env.ttlMs > def.retry.maxLifetimeMs) {
      throw new MagistralError(ErrorCode.BAD_ENVELOPE, `ttlMs exceeds ${def.retry.maxLifetimeMs}`);
    }
    if (env.createdAt > Date.now() + MAX_CLOCK_AHEAD_MS) {
      // A creation time in the future would stretch the lifetime past its ceiling.
      throw new MagistralError(ErrorCode.BAD_ENVELOPE, "createdAt is in the future");
    }
    if (expiresAt(env, def.retry) <= Date.now()) {
      throw new MagistralError(ErrorCode.EXPIRED, "the request's lifetime has already ended");
    }
    const validator = await this.view.validator(def);
    validator?.validate(env.payload);
  }

  private async persist(agency: string, def: ServiceDef, env: Envelope): Promise<SubmitReply> {
    const stored: Envelope = { ...env, service: def.id, sender: agency };
    // Fields only the bus sets: a consumer must not pose as a provider or an attempt.
    delete stored.attempt;
    delete stored.provider;
    // Headers the bus keeps for itself (a replay's generation) are not an agency's to set.
    if (stored.headers && REPLAY_HEADER in stored.headers) {
      const { [REPLAY_HEADER]: _dropped, ...own } = stored.headers;
      stored.headers = own;
    }
    const data = encodeEnvelope(stored);
    let duplicate: boolean;
    try {
      // A broadcast request is stored once per provider, each with its own retries.
      const acks = await Promise.all(
        providersOf(def).map((provider) =>
          this.ctx.bus.requests.publishDurable(lane(def.id, provider, def.broadcast).queue, data, {
            msgID: queueDedupId(agency, env.id, def.broadcast ? provider : undefined),
          }),
        ),
      );
      duplicate = acks.every((ack) => ack.duplicate);
    } catch (err) {
      throw new MagistralError(ErrorCode.UNAVAILABLE, "request not persisted, send it again", {
        cause: err,
      });
    }
    // A duplicate here repeats a submit whose stream ack was lost (the journal
    // had no acceptance a moment ago): journal the acceptance all the same, or
    // the message's status would stay "rejected".
    this.ctx.events.emit({
      type: "accepted",
      id: env.id,
      agency,
      service: def.id,
      provider: def.owner,
      bytes: env.payload.length,
      test: env.test,
      ...retainedContent(def.journalRetention, env),
    });
    return { ok: true, id: env.id, service: def.id, duplicate };
  }

  /** `status`: where one of the agency's own messages is, from the journal. */
  private onStatus(m: Msg): void {
    const agency = agencyOfApiSubject(m.subject)!;
    const run = async () => {
      const body = decodeValue(m.data) as { id?: unknown };
      if (!isMessageId(body?.id))
        throw new MagistralError(ErrorCode.BAD_REQUEST, "id must be a message id");
      const status = await this.statusFromJournal(body.id);
      // Another agency's message is reported as unknown, so ids leak nothing.
      if (!status || status.agency !== agency) {
        throw new MagistralError(ErrorCode.NOT_FOUND, `no message ${body.id} of ${agency}`);
      }
      return status;
    };
    run().then(
      (status) => respond(m, { ok: true, status }),
      (err) => respond(m, { ok: false, error: toMagistralError(err).toWire() }),
    );
  }

  /**
   * A message's status from this node's journal. The journal trails the bus
   * by the event batching (tens of milliseconds), so an id not found yet is
   * looked up again a few times before it is called unknown.
   */
  private async statusFromJournal(id: string): Promise<MessageStatus | undefined> {
    for (let look = 0; ; look++) {
      const records = await this.journal.trace(id);
      const status = statusOf(
        id,
        records.map((r) => r.event),
      );
      if (status || look >= STATUS_LOOKS) return status;
      await new Promise((r) => setTimeout(r, STATUS_LOOK_GAP_MS));
    }
  }

  /** `open`: makes sure the agency's durable consumer on REPLIES exists. */
  private onOpen(m: Msg): void {
    const agency = agencyOfApiSubject(m.subject)!;
    if (!this.view.agency(agency)) {
      respond(m, {
        ok: false,
        error: new MagistralError(ErrorCode.ACCESS_DENIED, "agency not registered").toWire(),
      });
      return;
    }
    ensureReplyConsumer(this.ctx, agency).then(
      () =>
        respond(m, {
          ok: true,
          agency,
          stream: STREAM.replies,
          consumer: consumerName.replies(agency),
        }),
      (err) =>
        respond(m, { ok: false, error: toMagistralError(err, ErrorCode.UNAVAILABLE).toWire() }),
    );
  }
}

export async function ensureReplyConsumer(ctx: NodeContext, agency: string): Promise<void> {
  const durable = consumerName.replies(agency);
  try {
    await ctx.bus.jsm.consumers.info(STREAM.replies, durable);
  } catch {
    await ctx.bus.jsm.consumers.add(STREAM.replies, {
      durable_name: durable,
      filter_subject: subject.reply(agency),
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: 30_000_000_000,
      max_ack_pending: 10_000,
    });
  }
}

function busy() {
  return new MagistralError(ErrorCode.UNAVAILABLE, "broker node is saturated, send again").toWire();
}

export function respond(m: Msg, reply: unknown): void {
  if (!m.reply) return;
  try {
    m.respond(encodeValue(reply));
  } catch {
    // The connection closed meanwhile (shutdown): the caller times out and sends again.
  }
}

/**
 * JetStream de-duplication id of a stored request: scoped by the sending
 * agency, so one agency's id never shadows another's.
 */
export function queueDedupId(agency: string, id: string, provider?: string): string {
  return provider ? `${agency}:${id}:${provider}` : `${agency}:${id}`;
}
