import type { ErrorCode } from "./errors.ts";
import type { MessageEvent } from "./events.ts";

/** Where a message is, as SMEV's GetStatus tells it. */
export type MessageState =
  | "accepted"
  | "queued"
  | "delivering"
  | "retrying"
  | "delivered"
  | "responded"
  | "expired"
  | "dead-lettered"
  | "rejected";

export interface DeliveryStatus {
  provider: string;
  state: MessageState;
  attempt?: number;
  /** When retrying: the time of the next attempt. */
  nextAt?: number;
  code?: ErrorCode;
  cause?: string;
}

export interface MessageStatus {
  id: string;
  service?: string;
  /** The sending agency. */
  agency?: string;
  /** The overall state: the least advanced of the deliveries (one per provider). */
  state: MessageState;
  code?: ErrorCode;
  updatedAt: number;
  deliveries: DeliveryStatus[];
}

const ORDER: MessageState[] = [
  "rejected",
  "accepted",
  "queued",
  "delivering",
  "retrying",
  "delivered",
  "expired",
  "dead-lettered",
  "responded",
];

/** Folds a message's journal events, in order, into its status; undefined if there are none. */
export function statusOf(id: string, events: MessageEvent[]): MessageStatus | undefined {
  if (events.length === 0) return undefined;
  const deliveries = new Map<string, DeliveryStatus>();
  const status: MessageStatus = { id, state: "accepted", updatedAt: 0, deliveries: [] };
  let accepted = false;
  for (const e of events) {
    status.updatedAt = Math.max(status.updatedAt, e.at);
    status.service ??= e.service;
    if (e.type === "rejected") {
      if (!accepted) Object.assign(status, { state: "rejected", code: e.code, agency: e.agency });
      continue;
    }
    if (e.type === "accepted") {
      accepted = true;
      Object.assign(status, { state: "queued", code: undefined, agency: e.agency });
      continue;
    }
    if (!e.provider) continue;
    const d = deliveries.get(e.provider) ?? { provider: e.provider, state: "queued" };
    deliveries.set(e.provider, applyEvent(d, e));
  }
  if (!accepted) return status.state === "rejected" ? status : undefined;
  status.deliveries = [...deliveries.values()];
  if (status.deliveries.length > 0) {
    const least = Math.min(...status.deliveries.map((d) => ORDER.indexOf(d.state)));
    status.state = ORDER[least]!;
    status.code = status.deliveries.find((d) => d.state === status.state)?.code;
  }
  return status;
}

function applyEvent(d: DeliveryStatus, e: MessageEvent): DeliveryStatus {
  switch (e.type) {
    case "attempt":
      return { provider: d.provider, state: "delivering", attempt: e.attempt };
    case "failed":
      return e.nextAt
        ? {
            ...d,
            state: "retrying",
            attempt: e.attempt,
            nextAt: e.nextAt,
            code: e.code,
            cause: e.cause,
          }
        : { ...d, code: e.code, cause: e.cause };
    case "delivered":
      return { provider: d.provider, state: "delivered", attempt: e.attempt };
    case "responded":
      return { provider: d.provider, state: "responded", attempt: e.attempt };
    case "expired":
      return { ...d, state: "expired", code: e.code, cause: e.cause };
    case "deadlettered":
      return d.state === "expired"
        ? d
        : { ...d, state: "dead-lettered", code: e.code, cause: e.cause };
    case "replayed":
      return { provider: d.provider, state: "queued" };
    default:
      return d;
  }
}
