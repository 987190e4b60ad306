import type { Consumer, ConsumerMessages, JetStreamClient } from "@nats-io/jetstream";
import { jetstream } from "@nats-io/jetstream";
import {
  type ConnectionOptions,
  connect,
  type NatsConnection,
  nkeyAuthenticator,
  type Subscription,
} from "@nats-io/transport-node";
import type { SubmitReply } from "./api.ts";
import {
  type BusEvent,
  callSubscriptionApi,
  readEvents,
  type SubscribeOptions,
  type SubscribeReply,
} from "./client-events.ts";
import type { ServiceHealthSummary } from "./cluster-health.ts";
import {
  decodeEnvelope,
  decodeValue,
  type Envelope,
  encodeEnvelope,
  encodeValue,
  PROTOCOL_VERSION,
} from "./envelope.ts";
import { ErrorCode, MagistralError, type WireError } from "./errors.ts";
import { assertToken, newMessageId } from "./ids.ts";
import type { MessageStatus } from "./message-status.ts";
import { guessContentType, type ProviderHandler, serveCall } from "./provider.ts";
import { Requester } from "./requester.ts";
import { type RequestSigner, signEnvelope } from "./signature.ts";
import { consumerName, lane, providerQueueGroup, STREAM, subject } from "./subjects.ts";
import type { EventSubscription } from "./subscriptions.ts";

export interface AgencyClientOptions {
  /** This agency's id, as registered. */
  agency: string;
  /** NATS connection options (servers, user/pass or other credentials). */
  nats: ConnectionOptions;
  /** The agency's nkey seed (`SU...`): logs in with it unless `nats` has an authenticator. */
  nkeySeed?: Uint8Array | string;
  /** Signs every submitted request (see docs/security.md); needed by services that require it. */
  signer?: RequestSigner;
  /**
   * How long a call of the bus's API (submit, status, health) waits for its
   * answer. A submit that times out may still have been stored: send it
   * again with the same id. Default 5 s.
   */
  apiTimeoutMs?: number;
}

export interface SubmitOptions {
  /** Message id; the idempotency key. Defaults to a new UUID. */
  id?: string;
  /** Lifetime asked for, within the service's ceiling. */
  ttlMs?: number;
  headers?: Record<string, string>;
  /** Defaults to application/xml for strings starting with `<`, else application/octet-stream. */
  contentType?: string;
  test?: boolean;
}

/** A response or final status read from REPLIES. */
export interface Reply {
  envelope: Envelope;
  ack(): void;
}

/** Thrown by `request` when the bus gives up on a message, and by `submit` on rejection. */
export class RequestFailedError extends MagistralError {
  constructor(readonly wire: WireError) {
    super(wire.code, wire.message);
  }
}

const encoder = new TextEncoder();
const SEEN_LIMIT = 10_000;
// Short enough that a submit lost with a dying NATS node is sent again soon;
// a broker answers in milliseconds.
const DEFAULT_API_TIMEOUT_MS = 5_000;

/**
 * An agency's connection to the bus: submit requests, read responses, and
 * serve the services it provides.
 */
export class AgencyClient {
  readonly agency: string;
  private readonly pending = new Map<string, (env: Envelope) => void>();
  private readonly unclaimed: Reply[] = [];
  private readonly waiters: ((reply: Reply) => void)[] = [];
  private replies: ConsumerMessages | undefined;
  private readonly subs: Subscription[] = [];
  private readonly eventReaders: ConsumerMessages[] = [];
  /** Answers already handed over, by request and provider, to drop a redelivered copy. */
  private readonly seen = new Set<string>();

  private signer: RequestSigner | undefined;
  private apiTimeoutMs = DEFAULT_API_TIMEOUT_MS;

  /** Submits go through one reply subscription, without nats.js's per-request cost. */
  private readonly requests: Requester;

  private constructor(
    readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    agency: string,
  ) {
    this.agency = agency;
    this.requests = new Requester(nc, subject.inboxPrefix(agency));
  }

  static async connect(opts: AgencyClientOptions): Promise<AgencyClient> {
    const agency = assertToken(opts.agency, "agency");
    const nc = await connect({
      name: `agency-${agency}`,
      inboxPrefix: subject.inboxPrefix(agency),
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      // Stack capture per request: measured 15-20% of the SDK's CPU per request in npm run bench.
      noAsyncTraces: true,
      ...(opts.nkeySeed === undefined
        ? {}
        : { authenticator: nkeyAuthenticator(seedBytes(opts.nkeySeed)) }),
      ...opts.nats,
    });
    const js = jetstream(nc, { timeout: 10_000 });
    const client = new AgencyClient(nc, js, agency);
    client.signer = opts.signer;
    client.apiTimeoutMs = opts.apiTimeoutMs ?? DEFAULT_API_TIMEOUT_MS;
    return client;
  }

  /**
   * Submits a request. Resolves once the bus has persisted it.
   * @throws RequestFailedError with the bus's error code when it is refused.
   */
  async submit(
    service: string | undefined,
    payload: Uint8Array | string,
    opts: SubmitOptions = {},
  ) {
    const bytes = typeof payload === "string" ? encoder.encode(payload) : payload;
    const env: Envelope = {
      v: PROTOCOL_VERSION,
      id: opts.id ?? newMessageId(),
      kind: "request",
      createdAt: Date.now(),
      payload: bytes,
      contentType: opts.contentType ?? guessContentType(payload),
    };
    if (service !== undefined) env.service = service;
    if (opts.ttlMs !== undefined) env.ttlMs = opts.ttlMs;
    if (opts.headers) env.headers = opts.headers;
    if (opts.test) env.test = true;
    if (this.signer) signEnvelope(env, this.signer);
    return this.submitEnvelope(env);
  }

  /** Submits an envelope as built by the caller (advanced: signatures, custom ids). */
  async submitEnvelope(
    env: Envelope,
  ): Promise<{ id: string; service: string; duplicate: boolean }> {
    const msg = await this.requests.request(
      subject.api(this.agency, "submit"),
      encodeEnvelope(env),
      { timeoutMs: this.apiTimeoutMs },
    );
    const reply = decodeValue(msg.data) as SubmitReply;
    if (!reply.ok) throw new RequestFailedError(reply.error);
    return { id: reply.id, service: reply.service, duplicate: reply.duplicate };
  }

  /**
   * Submits and waits for the provider's answer.
   * @throws RequestFailedError if the request is refused or ends without a response.
   */
  async request(
    service: string | undefined,
    payload: Uint8Array | string,
    opts: SubmitOptions & { timeoutMs?: number } = {},
  ): Promise<Envelope> {
    await this.openReplies();
    const id = opts.id ?? newMessageId();
    let timer: NodeJS.Timeout | undefined;
    const answered = new Promise<Envelope>((resolve, reject) => {
      timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new MagistralError(ErrorCode.PROVIDER_TIMEOUT, `no answer to ${id} in time`));
      }, opts.timeoutMs ?? 60_000);
      this.pending.set(id, (env) => {
        clearTimeout(timer);
        resolve(env);
      });
    });
    // The answer may time out while the submit is still waiting: keep that
    // rejection handled until `answered` is awaited below.
    answered.catch(() => {});
    try {
      await this.submit(service, payload, { ...opts, id });
    } catch (err) {
      // A refused request must not leave its timer to reject `answered` later, unhandled.
      clearTimeout(timer);
      this.pending.delete(id);
      throw err;
    }
    const env = await answered;
    if (env.kind === "status" && env.error) throw new RequestFailedError(env.error);
    return env;
  }

  /**
   * Responses and final statuses that no `request` call is waiting for, in
   * arrival order. Each must be acknowledged, or it is delivered again.
   */
  async *responses(): AsyncGenerator<Reply> {
    await this.openReplies();
    while (!this.nc.isClosed()) {
      const next = this.unclaimed.shift();
      if (next) {
        yield next;
        continue;
      }
      yield await new Promise<Reply>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Starts reading this agency's durable consumer on REPLIES, once. */
  async openReplies(): Promise<void> {
    if (this.replies) return;
    const opened = await this.nc.request(subject.api(this.agency, "open"), new Uint8Array(0), {
      timeout: this.apiTimeoutMs,
    });
    const reply = decodeValue(opened.data) as { ok: boolean; error?: WireError };
    if (!reply.ok) throw new RequestFailedError(reply.error!);
    if (this.replies) return;
    const consumer: Consumer = await this.js.consumers.get(
      STREAM.replies,
      consumerName.replies(this.agency),
    );
    this.replies = await consumer.consume({ max_messages: 256 });
    this.pump(this.replies);
  }

  private async pump(messages: ConsumerMessages) {
    for await (const m of messages) {
      let env: Envelope;
      try {
        env = decodeEnvelope(m.data);
      } catch {
        m.term();
        continue;
      }
      if (this.alreadySeen(env)) {
        m.ack();
        continue;
      }
      const waiting = env.correlationId ? this.pending.get(env.correlationId) : undefined;
      if (waiting) {
        this.pending.delete(env.correlationId!);
        m.ack();
        waiting(env);
        continue;
      }
      const reply: Reply = { envelope: env, ack: () => m.ack() };
      const waiter = this.waiters.shift();
      if (waiter) waiter(reply);
      else this.unclaimed.push(reply);
    }
  }

  /**
   * The bus stores one answer per request and provider; a copy can still
   * arrive twice if an ack is lost, so the last answers seen are remembered.
   */
  // LIMITATION: an answer counts as seen once queued for `responses()`, not
  // once acked: after 30 s unacked its redelivery is dropped as a copy.
  private alreadySeen(env: Envelope): boolean {
    if (!env.correlationId) return false;
    const key = `${env.correlationId}/${env.provider ?? ""}/${env.kind}`;
    if (this.seen.has(key)) return true;
    this.seen.add(key);
    if (this.seen.size > SEEN_LIMIT) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    return false;
  }

  /** Health of the services this agency can call (or one), summarized across broker nodes. */
  async health(service?: string): Promise<ServiceHealthSummary[]> {
    const body = service ? { service } : {};
    const msg = await this.nc.request(subject.api(this.agency, "health"), encodeValue(body), {
      timeout: this.apiTimeoutMs,
    });
    const reply = decodeValue(msg.data) as {
      ok: boolean;
      health?: ServiceHealthSummary[];
      error?: WireError;
    };
    if (!reply.ok) throw new RequestFailedError(reply.error!);
    return reply.health!;
  }

  /** Where one of this agency's messages is (GetStatus). */
  async status(id: string): Promise<MessageStatus> {
    const msg = await this.nc.request(subject.api(this.agency, "status"), encodeValue({ id }), {
      timeout: this.apiTimeoutMs,
    });
    const reply = decodeValue(msg.data) as {
      ok: boolean;
      status?: MessageStatus;
      error?: WireError;
    };
    if (!reply.ok) throw new RequestFailedError(reply.error!);
    return reply.status!;
  }

  /**
   * Subscribes this agency to events of the bus (statuses of its messages,
   * lifecycle and health of services, changes of its own services). The
   * bus keeps them durably until read with `events()`.
   * @throws MagistralError BAD_REQUEST for an unknown kind
   */
  subscribe(opts: SubscribeOptions): Promise<SubscribeReply> {
    return callSubscriptionApi(this.nc, this.agency, "subscribe", { ...opts });
  }

  /** Removes a subscription; notifications already stored can still be read. */
  async unsubscribe(id?: string): Promise<boolean> {
    const body = id === undefined ? {} : { id };
    const reply = await callSubscriptionApi<{ removed: boolean }>(
      this.nc,
      this.agency,
      "unsubscribe",
      body,
    );
    return reply.removed;
  }

  async subscriptions(): Promise<EventSubscription[]> {
    const reply = await callSubscriptionApi<{ subscriptions: EventSubscription[] }>(
      this.nc,
      this.agency,
      "subscriptions",
      {},
    );
    return reply.subscriptions;
  }

  /**
   * Notifications of this agency's subscriptions, oldest first, including
   * those stored while it was offline. Each must be acknowledged.
   */
  events(): AsyncGenerator<BusEvent> {
    return readEvents(this.js, this.agency, (messages) => this.eventReaders.push(messages));
  }

  /**
   * Serves calls of a service this agency owns. Adapters of one provider
   * share the calls (queue group). A handler that throws answers with a
   * fault, and the bus retries by the service's policy.
   */
  provide(service: string, handler: ProviderHandler): Subscription[] {
    assertToken(service, "service");
    // A broadcast service calls each provider on its own lane subject.
    const subjects = [subject.call(service), lane(service, this.agency, true).call];
    const subs = subjects.map((subj) =>
      this.nc.subscribe(subj, {
        queue: providerQueueGroup(service),
        callback: (err, msg) => {
          // Under authorization a provider may subscribe only to the lanes it
          // serves; the other subject of the pair is refused with an error.
          if (err) return;
          void serveCall(msg, handler);
        },
      }),
    );
    this.subs.push(...subs);
    return subs;
  }

  async close(): Promise<void> {
    this.replies?.stop();
    this.requests.close();
    for (const reader of this.eventReaders) reader.stop();
    await this.nc.drain().catch(() => {});
  }
}

function seedBytes(seed: Uint8Array | string): Uint8Array {
  return typeof seed === "string" ? encoder.encode(seed.trim()) : seed;
}

export { ProviderFault, type ProviderHandler, type ProviderResult } from "./provider.ts";
