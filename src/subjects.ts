/**
 * Subjects, streams, consumers and buckets of the bus. Every name the bus
 * uses on NATS is built here and nowhere else.
 */
/**
 * Accepted requests wait in QUEUE_SHARDS work-queue streams, MG_QUEUE_0 to
 * MG_QUEUE_7, each service always in the same one. nats-server 2.9 checks
 * every consumer of a work-queue stream for interest when a message is
 * acknowledged: with 10,000 services' consumers on one stream, it spent
 * ~1.5 ms of CPU per message (a tenth of the rate with 10 consumers),
 * measured; with 1,250 a stream, ~0.1 ms. The count is part of the wire
 * protocol: every node must use the same, and changing it strands waiting
 * requests in the streams of the old count.
 */
export const QUEUE_SHARDS = 8;

/** The queue shard of a service: FNV-1a of its id, modulo QUEUE_SHARDS. */
export function queueShard(service: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < service.length; i++) {
    hash ^= service.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % QUEUE_SHARDS;
}

/** The work-queue stream that holds a service's accepted requests. */
export const queueStream = (service: string) => `MG_QUEUE_${queueShard(service)}`;

/** Every queue stream, for what looks at all of them (stream creation, totals). */
export const queueStreams = () =>
  Array.from({ length: QUEUE_SHARDS }, (_, shard) => `MG_QUEUE_${shard}`);

export const STREAM = {
  replies: "MG_REPLIES",
  events: "MG_EVENTS",
  notify: "MG_NOTIFY",
  alerts: "MG_ALERTS",
  deadletter: "MG_DEADLETTER",
} as const;

export const BUCKET = {
  agencies: "mg_agencies",
  services: "mg_services",
  schemas: "mg_schemas",
  brokers: "mg_brokers",
  /** Event subscriptions, one key per agency and subscription id. */
  subscriptions: "mg_subscriptions",
  /** Last alerted state per service and topic, shared so one transition alerts once. */
  alerts: "mg_alerts",
  /** Rate limit and daily quota state per service and consumer, shared by broker nodes. */
  limits: "mg_limits",
} as const;

/** Queue group of broker nodes answering the agency and admin APIs. */
export const BROKER_QUEUE_GROUP = "mg_brokers";

export const subject = {
  api: (agency: string, op: string) => `mg.api.${agency}.${op}`,
  apiWildcard: (op: string) => `mg.api.*.${op}`,
  queue: (service: string) => `mg.queue.${queueShard(service)}.${service}`,
  call: (service: string) => `mg.call.${service}`,
  reply: (agency: string) => `mg.reply.${agency}`,
  events: (category: string, node: string) => `mg.event.${category}.${node}`,
  notify: (agency: string) => `mg.notify.${agency}`,
  alert: (severity: string, service: string) => `mg.alert.${severity}.${service}`,
  deadletter: (service: string) => `mg.dlq.${service}`,
  admin: (op: string) => `mg.admin.${op}`,
  inboxPrefix: (agency: string) => `_INBOX.${agency}`,
} as const;

export const consumerName = {
  service: (service: string) => `svc_${service}`,
  replies: (agency: string) => `reply_${agency}`,
  journal: (node: string) => `journal_${node}`,
  stats: (node: string) => `stats_${node}`,
  /** Shared by every broker node: each EVENTS batch is matched against subscriptions once. */
  notifier: "notifier",
  notifierAlerts: "notifier_alerts",
  /** An agency's own durable consumer on NOTIFY. */
  notify: (agency: string) => `notify_${agency}`,
} as const;

/**
 * Where one provider's share of a service's requests waits and is called:
 * a plain service has one lane (its owner); a broadcast service one per provider.
 */
export function lane(service: string, provider: string, broadcast: boolean) {
  const stream = queueStream(service);
  return broadcast
    ? {
        stream,
        queue: `${subject.queue(service)}.${provider}`,
        call: `mg.call.${service}.${provider}`,
        durable: `svc_${service}__${provider}`,
      }
    : {
        stream,
        queue: subject.queue(service),
        call: `mg.call.${service}`,
        durable: `svc_${service}`,
      };
}

/** Queue group in which all adapters of one provider answer calls for a service. */
export const providerQueueGroup = (service: string) => `provider_${service}`;

/** The agency token of `mg.api.<agency>.<op>`, or undefined. */
export function agencyOfApiSubject(subj: string): string | undefined {
  const parts = subj.split(".");
  return parts.length === 4 && parts[0] === "mg" && parts[1] === "api" ? parts[2] : undefined;
}
