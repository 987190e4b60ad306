import type { Msg, Subscription } from "@nats-io/transport-node";
import { respond } from "./api.ts";
import { decodeValue } from "./envelope.ts";
import { ErrorCode, MagistralError, toMagistralError } from "./errors.ts";
import type { NodeContext } from "./node-context.ts";
import type { RegistryView } from "./registry-view.ts";
import {
  agencyOfApiSubject,
  BROKER_QUEUE_GROUP,
  consumerName,
  STREAM,
  subject,
} from "./subjects.ts";
import {
  ensureNotifyConsumer,
  parseSubscription,
  type SubscriptionIndex,
  type SubscriptionStore,
  subscriptionId,
} from "./subscriptions.ts";

type Handler = (agency: string, body: Record<string, unknown>) => Promise<unknown>;

/** How long `subscribe` waits for this node's notifier to see the new subscription. */
const SEEN_TIMEOUT_MS = 2_000;

/**
 * The agencies' subscription operations, `mg.api.<agency>.subscribe`,
 * `.unsubscribe` and `.subscriptions`, answered by every broker node in one
 * queue group. Replies are `{ ok: true, ... }` or `{ ok: false, error }`.
 */
export class SubscriptionApi {
  private subs: Subscription[] = [];
  private readonly handlers: Record<string, Handler>;

  constructor(
    private readonly ctx: NodeContext,
    private readonly view: RegistryView,
    private readonly store: SubscriptionStore,
    private readonly index: SubscriptionIndex,
  ) {
    this.handlers = {
      subscribe: (agency, body) => this.subscribe(agency, body),
      unsubscribe: (agency, body) => this.unsubscribe(agency, body),
      subscriptions: async (agency) => ({ subscriptions: this.index.list(agency) }),
    };
  }

  start(): void {
    for (const op of Object.keys(this.handlers)) {
      this.subs.push(
        this.ctx.bus.nc.subscribe(subject.apiWildcard(op), {
          queue: BROKER_QUEUE_GROUP,
          callback: (_err, m) => this.onRequest(op, m),
        }),
      );
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.subs.map((s) => s.drain()));
  }

  private onRequest(op: string, m: Msg): void {
    const agency = agencyOfApiSubject(m.subject)!;
    const run = async () => {
      if (!this.view.agency(agency)) {
        throw new MagistralError(ErrorCode.ACCESS_DENIED, `agency ${agency} is not registered`);
      }
      const body = m.data.length > 0 ? decodeValue(m.data) : {};
      if (typeof body !== "object" || body === null) {
        throw new MagistralError(ErrorCode.BAD_REQUEST, "body must be a map");
      }
      return this.handlers[op]!(agency, body as Record<string, unknown>);
    };
    run().then(
      (result) => respond(m, { ok: true, ...(result as object) }),
      (err) => respond(m, { ok: false, error: toMagistralError(err).toWire() }),
    );
  }

  /** Stores the subscription, creates the agency's NOTIFY consumer, and names it. */
  private async subscribe(agency: string, body: Record<string, unknown>) {
    const sub = parseSubscription(agency, body);
    await ensureNotifyConsumer(this.ctx.bus.jsm, agency);
    const revision = await this.store.put(sub);
    await this.seen(revision);
    return { subscription: sub, stream: STREAM.notify, consumer: consumerName.notify(agency) };
  }

  private async unsubscribe(agency: string, body: Record<string, unknown>) {
    const removed = await this.store.remove(agency, subscriptionId(body));
    return { removed };
  }

  /**
   * Waits until this node's index holds `revision`, so events right after
   * the reply are matched here.
   * LIMITATION: other broker nodes see the subscription a few milliseconds
   * later; an event they match meanwhile is not notified.
   */
  private async seen(revision: number): Promise<void> {
    const deadline = Date.now() + SEEN_TIMEOUT_MS;
    while (this.index.revision < revision && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}
