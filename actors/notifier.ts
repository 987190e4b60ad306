import { AckPolicy, DeliverPolicy, type JsMsg } from "@nats-io/jetstream";
import { dispatch, type Ref, spawn } from "nact";
import {
  decodeValue,
  type Envelope,
  encodeEnvelope,
  encodeValue,
  PROTOCOL_VERSION,
} from "../src/envelope.ts";
import { decodeEventBatch, startEventsMailbox } from "../src/event-batches.ts";
import type { Logger } from "../src/logger.ts";
import { Mailbox } from "../src/mailbox.ts";
import { recordActorRestart } from "../src/metrics.ts";
import type { NodeContext } from "../src/node-context.ts";
import { consumerName, STREAM, subject } from "../src/subjects.ts";
import {
  type HealthAlert,
  type NotifyDelivery,
  notificationsOf,
  notificationsOfAlert,
  type SubscriptionIndex,
} from "../src/subscriptions.ts";

export type NotifierMsg =
  | { type: "events"; msg: JsMsg }
  | { type: "alert"; msg: JsMsg }
  | { type: "published"; msg: JsMsg; source: Source }
  | { type: "publishFailed"; msg: JsMsg; source: Source; err: unknown };

type Source = "events" | "alerts";

/**
 * EVENTS batches whose notifications are being published at once.
 * LIMITATION: batches are published in parallel and by several nodes, so an
 * agency may receive the notifications of one message out of order; each
 * carries the step's time `at` and type.
 */
const BATCHES_IN_FLIGHT = 8;
const ALERTS_IN_FLIGHT = 16;
const RETRY_DELAY_MS = 1_000;

/**
 * Matches EVENTS and ALERTS against the subscriptions and publishes each
 * match to the agency's `mg.notify.<agency>`. Both consumers are shared by
 * every broker node, so each event is matched once across the cluster; a
 * batch is acknowledged once all its notifications are stored, and a batch
 * handled twice publishes the same de-duplication ids.
 */
export function spawnNotifier(parent: Ref<unknown>, ctx: NodeContext, index: SubscriptionIndex) {
  const log = ctx.log.child({ component: "notifier" });
  const mailboxes: Partial<Record<Source, Mailbox>> = {};
  const notifier = spawn(
    parent,
    (state: undefined, msg: NotifierMsg, actx) => {
      switch (msg.type) {
        case "events": {
          const deliveries = eventDeliveries(index, msg.msg, log);
          if (deliveries) publishAll(ctx, actx.self, msg.msg, "events", deliveries);
          else mailboxes.events?.release();
          break;
        }
        case "alert":
          publishAll(ctx, actx.self, msg.msg, "alerts", alertDeliveries(index, msg.msg, log));
          break;
        case "published":
          msg.msg.ack();
          mailboxes[msg.source]?.release();
          break;
        case "publishFailed":
          log.warn({ err: msg.err, seq: msg.msg.seq }, "notifications not stored, retrying");
          msg.msg.nak(RETRY_DELAY_MS);
          mailboxes[msg.source]?.release();
          break;
      }
      return state;
    },
    "notifier",
    {
      onCrash: (_msg, err, sctx) => {
        log.error({ err }, "notifier actor crashed, resuming");
        recordActorRestart(ctx.nodeId, "notifier");
        return sctx.resume;
      },
    },
  );

  mailboxes.events = startEventsMailbox(ctx, {
    durable: consumerName.notifier,
    limit: BATCHES_IN_FLIGHT,
    // Nothing was subscribed before the bus first started, so history is not replayed.
    from: "new",
    onMessage: (msg) => dispatch(notifier, { type: "events", msg }),
    log,
    owner: "notifier",
  });
  mailboxes.alerts = startAlertsMailbox(ctx, log, (msg) =>
    dispatch(notifier, { type: "alert", msg }),
  );
  return notifier;
}

function startAlertsMailbox(ctx: NodeContext, log: Logger, onMessage: (msg: JsMsg) => void) {
  const mailbox = new Mailbox(ctx.bus.js, ctx.bus.jsm, {
    stream: STREAM.alerts,
    durable: consumerName.notifierAlerts,
    config: () => ({
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.New,
      ack_wait: 60_000_000_000,
      max_ack_pending: 1_000,
    }),
    onMessage,
    log,
  });
  ctx.mailboxes.set("notifier/alerts", mailbox);
  mailbox.setLimit(ALERTS_IN_FLIGHT);
  mailbox.start();
  return mailbox;
}

/** The deliveries of one EVENTS batch; undefined when it was unreadable (and terminated). */
function eventDeliveries(index: SubscriptionIndex, msg: JsMsg, log: Logger) {
  const events = decodeEventBatch(msg, log);
  if (!events) return undefined;
  return events.flatMap((event, i) => notificationsOf(index, event, `ev-${msg.seq}-${i}`));
}

function alertDeliveries(index: SubscriptionIndex, msg: JsMsg, log: Logger): NotifyDelivery[] {
  try {
    return notificationsOfAlert(index, decodeValue(msg.data) as HealthAlert);
  } catch (err) {
    log.error({ err, seq: msg.seq }, "unreadable alert, not forwarded");
    return [];
  }
}

/** Publishes every delivery, then tells the actor; the handler itself never waits. */
function publishAll(
  ctx: NodeContext,
  self: Ref<NotifierMsg>,
  msg: JsMsg,
  source: Source,
  deliveries: NotifyDelivery[],
): void {
  const publishes = deliveries.map(({ agency, notification }) =>
    ctx.bus.js.publish(subject.notify(agency), encodeEnvelope(toEnvelope(notification)), {
      msgID: `${notification.id}:${agency}`,
    }),
  );
  Promise.all(publishes).then(
    () => dispatch(self, { type: "published", msg, source }),
    (err) => dispatch(self, { type: "publishFailed", msg, source, err }),
  );
}

function toEnvelope(notification: NotifyDelivery["notification"]): Envelope {
  const env: Envelope = {
    v: PROTOCOL_VERSION,
    id: notification.id,
    kind: "event",
    createdAt: notification.at,
    headers: { "Mg-Event-Kind": notification.kind },
    contentType: "application/msgpack",
    payload: encodeValue(notification),
  };
  if (notification.service) env.service = notification.service;
  return env;
}
