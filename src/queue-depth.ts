import type { MsgRequest } from "@nats-io/jetstream";
import type { BusConnection } from "./nats.ts";
import { providersOf, type ServiceDef } from "./registry.ts";
import { lane } from "./subjects.ts";

/** What waits in QUEUE for one service, summed over its provider lanes. */
export interface QueueDepth {
  service: string;
  /** Requests not yet handed to any broker node. */
  pending: number;
  /** Requests handed to a node and not yet acknowledged: calls in flight or waiting to retry. */
  inFlight: number;
  /** Requests delivered more than once and still unacknowledged. */
  redelivered: number;
  /** When the oldest request still in QUEUE was accepted, in epoch milliseconds. */
  oldestAt?: number;
  oldestAgeMs?: number;
}

/**
 * Reads queue depths from the service consumers' info and the time of each
 * lane's first stored message. Two requests per lane; meant for on-demand
 * queries and metrics scrapes, not for a hot path.
 */
export async function queueDepths(bus: BusConnection, defs: ServiceDef[]): Promise<QueueDepth[]> {
  const now = Date.now();
  return Promise.all(defs.map((def) => serviceDepth(bus, def, now)));
}

async function serviceDepth(bus: BusConnection, def: ServiceDef, now: number) {
  const depth: QueueDepth = { service: def.id, pending: 0, inFlight: 0, redelivered: 0 };
  const lanes = providersOf(def).map((p) => lane(def.id, p, def.broadcast));
  const infos = await Promise.all(lanes.map((l) => laneDepth(bus, l.stream, l.durable, l.queue)));
  for (const info of infos) {
    depth.pending += info.pending;
    depth.inFlight += info.inFlight;
    depth.redelivered += info.redelivered;
    if (info.oldestAt !== undefined)
      depth.oldestAt = Math.min(depth.oldestAt ?? now, info.oldestAt);
  }
  if (depth.oldestAt !== undefined) depth.oldestAgeMs = Math.max(0, now - depth.oldestAt);
  return depth;
}

async function laneDepth(
  bus: BusConnection,
  stream: string,
  durable: string,
  queueSubject: string,
) {
  const info = await bus.jsm.consumers.info(stream, durable).catch(() => undefined);
  const out = {
    pending: info?.num_pending ?? 0,
    inFlight: info?.num_ack_pending ?? 0,
    redelivered: info?.num_redelivered ?? 0,
    oldestAt: undefined as number | undefined,
  };
  if (out.pending + out.inFlight === 0) return out;
  // QUEUE is a work queue: acknowledged requests are gone, so the lane's
  // first message is the oldest.
  const first = { seq: 0, next_by_subj: queueSubject } as unknown as MsgRequest;
  const msg = await bus.jsm.streams.getMessage(stream, first).catch(() => null);
  if (msg) out.oldestAt = msg.time.getTime();
  return out;
}
