import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { decodeEnvelope, decodeValue, type Envelope, encodeValue } from "./envelope.ts";
import { ErrorCode, MagistralError, type WireError } from "./errors.ts";
import { consumerName, STREAM, subject } from "./subjects.ts";
import type { EventSubscription, Notification, SubscriptionKind } from "./subscriptions.ts";

export interface SubscribeOptions {
  kinds: SubscriptionKind[];
  /** Only events of these services. */
  services?: string[];
  /** Names the subscription, so it can be replaced or removed; `default` when absent. */
  id?: string;
}

/** One notification read from the agency's NOTIFY consumer; ack it, or it comes again. */
export interface BusEvent {
  notification: Notification;
  envelope: Envelope;
  ack(): void;
  /** Asks for it again after `delayMs`. */
  nak(delayMs?: number): void;
}

const REQUEST_TIMEOUT_MS = 15_000;

/** Calls one subscription operation of `mg.api.<agency>`. @throws MagistralError */
export async function callSubscriptionApi<T>(
  nc: NatsConnection,
  agency: string,
  op: "subscribe" | "unsubscribe" | "subscriptions",
  body: Record<string, unknown>,
): Promise<T> {
  const msg = await nc.request(subject.api(agency, op), encodeValue(body), {
    timeout: REQUEST_TIMEOUT_MS,
  });
  const reply = decodeValue(msg.data) as { ok: boolean; error?: WireError } & T;
  if (!reply.ok) throw new MagistralError(reply.error!.code, reply.error!.message);
  return reply;
}

export type SubscribeReply = { subscription: EventSubscription; stream: string; consumer: string };

/**
 * Reads the agency's durable consumer on NOTIFY, created by the bus on the
 * first `subscribe`. Notifications kept while the agency was away come
 * first. The generator ends when the connection closes or `stop` is called.
 */
export async function* readEvents(
  js: JetStreamClient,
  agency: string,
  onOpen?: (messages: ConsumerMessages) => void,
): AsyncGenerator<BusEvent> {
  let consumer: Awaited<ReturnType<JetStreamClient["consumers"]["get"]>>;
  try {
    consumer = await js.consumers.get(STREAM.notify, consumerName.notify(agency));
  } catch (err) {
    throw new MagistralError(ErrorCode.NOT_FOUND, "no subscription yet: call subscribe first", {
      cause: err,
    });
  }
  const messages = await consumer.consume({ max_messages: 256 });
  onOpen?.(messages);
  try {
    for await (const m of messages) {
      const event = toBusEvent(m);
      if (event) yield event;
    }
  } finally {
    messages.stop();
  }
}

function toBusEvent(m: JsMsg): BusEvent | undefined {
  let envelope: Envelope;
  let notification: Notification;
  try {
    envelope = decodeEnvelope(m.data);
    notification = decodeValue(envelope.payload) as Notification;
  } catch {
    // Only the bus publishes NOTIFY; a message that does not decode is kept for an operator.
    m.term();
    return undefined;
  }
  return {
    notification,
    envelope,
    ack: () => m.ack(),
    nak: (delayMs) => m.nak(delayMs),
  };
}
