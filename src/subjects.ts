/**
 * Subjects, streams, consumers and buckets of the bus. Every name the bus
 * uses on NATS is built here and nowhere else.
 */
export const STREAM = {
  queue: "MG_QUEUE",
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
  queue: (service: string) => `mg.queue.${service}`,
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
  return broadcast
    ? {
        queue: `mg.queue.${service}.${provider}`,
        call: `mg.call.${service}.${provider}`,
        durable: `svc_${service}__${provider}`,
      }
    : { queue: `mg.queue.${service}`, call: `mg.call.${service}`, durable: `svc_${service}` };
}

/** Queue group in which all adapters of one provider answer calls for a service. */
export const providerQueueGroup = (service: string) => `provider_${service}`;

/** The agency token of `mg.api.<agency>.<op>`, or undefined. */
export function agencyOfApiSubject(subj: string): string | undefined {
  const parts = subj.split(".");
  return parts.length === 4 && parts[0] === "mg" && parts[1] === "api" ? parts[2] : undefined;
}
