import { AckPolicy, DeliverPolicy, type JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { decodeValue, encodeValue } from "./envelope.ts";
import { ErrorCode, MagistralError } from "./errors.ts";
import type { MessageEvent } from "./events.ts";
import { assertToken } from "./ids.ts";
import { consumerName, STREAM, subject } from "./subjects.ts";

/**
 * What an agency can subscribe to:
 * - `status`: every step of its own messages (accepted ... responded, dead-lettered);
 * - `lifecycle`: services registered, suspended, resumed or retired;
 * - `health`: circuit, availability and latency alerts of services;
 * - `registry`: every change of the services it owns and of its own registration.
 *
 * LIMITATION: `lifecycle` and `health` cover every service until access lists
 * say which services an agency may call.
 */
export type SubscriptionKind = "status" | "lifecycle" | "health" | "registry";
export const SUBSCRIPTION_KINDS: readonly SubscriptionKind[] = [
  "status",
  "lifecycle",
  "health",
  "registry",
];

/** One subscription of one agency; an agency may hold several, by id. */
export interface EventSubscription {
  /** Chosen by the agency (a subject token); `default` when not given. */
  id: string;
  agency: string;
  kinds: SubscriptionKind[];
  /** Only events of these services; all services when absent. */
  services?: string[];
  createdAt: number;
}

/** What an agency receives on `mg.notify.<agency>`, inside an envelope of kind `event`. */
export interface Notification {
  /** Unique per event of the bus; the same event matched for two agencies has the same id. */
  id: string;
  kind: SubscriptionKind;
  service?: string;
  at: number;
  /** status: the step of the message, without its content. */
  message?: MessageStep;
  /** lifecycle: the service's status before (absent when new) and after. */
  lifecycle?: { before?: string; after?: string; version?: string };
  /** registry: the change as journaled. */
  change?: { entity?: string; key?: string; who?: string; before?: unknown; after?: unknown };
  /** health: the operator alert it comes from. */
  health?: { alert: string; severity: string; provider?: string; message: string };
}

export type MessageStep = Pick<
  MessageEvent,
  "id" | "type" | "service" | "provider" | "attempt" | "code" | "cause" | "latencyMs" | "at"
>;

/** The fields of an ALERTS message the notifier reads. */
export interface HealthAlert {
  id: string;
  kind: string;
  severity: string;
  service: string;
  provider?: string;
  at: number;
  message: string;
}

/**
 * Alert kinds that tell the health of a service; others (dead letters,
 * nodes) are not forwarded.
 */
const HEALTH_ALERTS: ReadonlySet<string> = new Set([
  "circuit_opened",
  "circuit_closed",
  "service_down",
  "service_recovered",
  "latency_over_budget",
  "latency_recovered",
]);

const DEFAULT_SUBSCRIPTION_ID = "default";

/** Checks a subscribe request. @throws MagistralError BAD_REQUEST */
export function parseSubscription(agency: string, body: Record<string, unknown>, now = Date.now()) {
  const kinds = body.kinds;
  if (!Array.isArray(kinds) || kinds.length === 0) {
    throw badRequest(`kinds: a list of ${SUBSCRIPTION_KINDS.join(", ")}`);
  }
  for (const kind of kinds) {
    if (!SUBSCRIPTION_KINDS.includes(kind)) throw badRequest(`unknown kind ${String(kind)}`);
  }
  const sub: EventSubscription = {
    id: body.id === undefined ? DEFAULT_SUBSCRIPTION_ID : assertToken(body.id, "subscription id"),
    agency,
    kinds: [...new Set(kinds as SubscriptionKind[])],
    createdAt: now,
  };
  if (body.services !== undefined) {
    if (!Array.isArray(body.services)) throw badRequest("services: a list of service ids");
    sub.services = body.services.map((s) => assertToken(s, "service id"));
  }
  return sub;
}

export function subscriptionId(body: Record<string, unknown>): string {
  return body.id === undefined ? DEFAULT_SUBSCRIPTION_ID : assertToken(body.id, "subscription id");
}

/** The subscriptions bucket; keys are `<agency>.<id>`, so they survive broker restarts. */
export class SubscriptionStore {
  constructor(readonly kv: KV) {}

  /** Stores a subscription and returns the bucket revision it got. */
  put(sub: EventSubscription): Promise<number> {
    return this.kv.put(`${sub.agency}.${sub.id}`, encodeValue(sub));
  }

  async remove(agency: string, id: string): Promise<boolean> {
    const entry = await this.kv.get(`${agency}.${id}`);
    if (entry?.operation !== "PUT") return false;
    await this.kv.delete(`${agency}.${id}`);
    return true;
  }
}

/**
 * This node's copy of every subscription, kept by a follower of the bucket,
 * read by the notifier for every event without touching NATS.
 */
export class SubscriptionIndex {
  private readonly byKey = new Map<string, EventSubscription>();
  private readonly byAgency = new Map<string, Map<string, EventSubscription>>();
  /** Highest bucket revision seen, so the API can wait until its own write arrives. */
  revision = 0;

  set(key: string, value: Uint8Array, revision: number): void {
    const sub = decodeValue(value) as EventSubscription;
    this.delete(key);
    this.byKey.set(key, sub);
    const mine = this.byAgency.get(sub.agency) ?? new Map();
    mine.set(sub.id, sub);
    this.byAgency.set(sub.agency, mine);
    this.revision = Math.max(this.revision, revision);
  }

  delete(key: string): void {
    const sub = this.byKey.get(key);
    if (!sub) return;
    this.byKey.delete(key);
    this.byAgency.get(sub.agency)?.delete(sub.id);
    if (this.byAgency.get(sub.agency)?.size === 0) this.byAgency.delete(sub.agency);
  }

  list(agency?: string): EventSubscription[] {
    if (agency) return [...(this.byAgency.get(agency)?.values() ?? [])];
    return [...this.byKey.values()];
  }

  agencies(): string[] {
    return [...this.byAgency.keys()];
  }

  /** Agencies with a subscription of `kind` that takes events of `service`. */
  *subscribers(kind: SubscriptionKind, service: string | undefined): Generator<string> {
    for (const [agency, subs] of this.byAgency) {
      for (const sub of subs.values()) {
        if (!sub.kinds.includes(kind)) continue;
        if (sub.services && (!service || !sub.services.includes(service))) continue;
        yield agency;
        break;
      }
    }
  }

  /** Whether `agency` takes events of `kind` about `service`. */
  wants(agency: string, kind: SubscriptionKind, service: string | undefined): boolean {
    for (const sub of this.byAgency.get(agency)?.values() ?? []) {
      if (!sub.kinds.includes(kind)) continue;
      if (!sub.services || (service && sub.services.includes(service))) return true;
    }
    return false;
  }
}

/** One notification to publish, to one agency. */
export interface NotifyDelivery {
  agency: string;
  notification: Notification;
}

/**
 * The notifications one journal event makes. `eventId` is unique and
 * stable for the event (its EVENTS sequence and place in the batch), so a
 * batch handled twice publishes the same de-duplication ids.
 */
export function notificationsOf(
  index: SubscriptionIndex,
  event: MessageEvent,
  eventId: string,
): NotifyDelivery[] {
  if (event.type !== "changed") {
    if (!event.agency || !index.wants(event.agency, "status", event.service)) return [];
    const notification = base(eventId, "status", event);
    notification.message = messageStep(event);
    return [{ agency: event.agency, notification }];
  }
  return [
    ...lifecycleNotifications(index, event, eventId),
    ...registryNotifications(index, event, eventId),
  ];
}

function lifecycleNotifications(index: SubscriptionIndex, event: MessageEvent, eventId: string) {
  if (event.entity !== "service") return [];
  const before = event.before as { status?: string; version?: string } | undefined;
  const after = event.after as { status?: string; version?: string } | undefined;
  if (before?.status === after?.status) return [];
  const notification = base(eventId, "lifecycle", event);
  notification.lifecycle = {
    before: before?.status,
    after: after?.status,
    version: after?.version,
  };
  return [...index.subscribers("lifecycle", event.service)].map((agency) => ({
    agency,
    notification,
  }));
}

function registryNotifications(index: SubscriptionIndex, event: MessageEvent, eventId: string) {
  // A changed event names in `agency` the owner of the service or policy, or the agency itself.
  const owner = event.agency;
  if (!owner || !index.wants(owner, "registry", event.service)) return [];
  const notification = base(eventId, "registry", event);
  const { entity, key, who, before, after } = event;
  notification.change = { entity, key, who, before, after };
  return [{ agency: owner, notification }];
}

/** The notifications one ALERTS message makes. */
export function notificationsOfAlert(index: SubscriptionIndex, alert: HealthAlert) {
  if (!HEALTH_ALERTS.has(alert.kind)) return [];
  const notification: Notification = {
    id: `al-${alert.id}`,
    kind: "health",
    service: alert.service,
    at: alert.at,
    health: {
      alert: alert.kind,
      severity: alert.severity,
      provider: alert.provider,
      message: alert.message,
    },
  };
  return [...index.subscribers("health", alert.service)].map((agency) => ({
    agency,
    notification,
  }));
}

function base(id: string, kind: SubscriptionKind, event: MessageEvent): Notification {
  return { id, kind, service: event.service, at: event.at };
}

function messageStep(e: MessageEvent): MessageStep {
  const step: MessageStep = { id: e.id, type: e.type, at: e.at };
  if (e.service) step.service = e.service;
  if (e.provider) step.provider = e.provider;
  if (e.attempt !== undefined) step.attempt = e.attempt;
  if (e.code) step.code = e.code;
  if (e.cause) step.cause = e.cause;
  if (e.latencyMs !== undefined) step.latencyMs = e.latencyMs;
  return step;
}

/** Creates the agency's durable consumer on NOTIFY unless it exists. */
export async function ensureNotifyConsumer(jsm: JetStreamManager, agency: string): Promise<void> {
  const durable = consumerName.notify(agency);
  try {
    await jsm.consumers.info(STREAM.notify, durable);
  } catch {
    await jsm.consumers.add(STREAM.notify, {
      durable_name: durable,
      filter_subject: subject.notify(agency),
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: 30_000_000_000,
      max_ack_pending: 10_000,
    });
  }
}

function badRequest(message: string) {
  return new MagistralError(ErrorCode.BAD_REQUEST, message);
}
