import type { KV } from "@nats-io/kv";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import type { HealthState, LaneHealth } from "../actors/lane.ts";
import { respond } from "./api.ts";
import { decodeValue } from "./envelope.ts";
import { ErrorCode, MagistralError, toMagistralError } from "./errors.ts";
import { agencyOfApiSubject, BROKER_QUEUE_GROUP } from "./subjects.ts";

/** Every broker node answers here with the health of its own lanes (no queue group). */
export const NODE_HEALTH_SUBJECT = "mg.broker.health";

const GATHER_WAIT_MS = 1_000;

/** Answers health requests with this node's lanes. */
export function serveNodeHealth(
  nc: NatsConnection,
  local: () => Promise<LaneHealth[]>,
): Subscription {
  return nc.subscribe(NODE_HEALTH_SUBJECT, {
    callback: (_err, m) => {
      local().then(
        (lanes) => respond(m, lanes),
        () => respond(m, []),
      );
    },
  });
}

/**
 * The lanes of every live broker node: asks them all at once and waits for
 * as many answers as the membership bucket has live nodes, or a second.
 */
export async function gatherHealth(nc: NatsConnection, brokers: KV): Promise<LaneHealth[]> {
  const expected = await liveNodes(brokers);
  const replies = await nc.requestMany(NODE_HEALTH_SUBJECT, new Uint8Array(0), {
    strategy: "count",
    maxMessages: Math.max(1, expected),
    maxWait: GATHER_WAIT_MS,
  });
  const lanes: LaneHealth[] = [];
  for await (const m of replies) {
    if (m.data.length > 0) lanes.push(...(decodeValue(m.data) as LaneHealth[]));
  }
  return lanes;
}

/** Heartbeats older than this are of nodes that will not answer. */
const LIVE_HEARTBEAT_MS = 30_000;

async function liveNodes(brokers: KV): Promise<number> {
  let count = 0;
  for await (const key of await brokers.keys()) {
    const entry = await brokers.get(key);
    if (entry?.operation !== "PUT" || entry.value.length === 0) continue;
    const beat = decodeValue(entry.value) as { at?: number };
    if (typeof beat.at === "number" && Date.now() - beat.at < LIVE_HEARTBEAT_MS) count++;
  }
  return count;
}

const RANK: Record<HealthState, number> = { up: 0, degraded: 1, down: 2 };

/** One line per service and provider: the worst state any node sees, the latest times. */
export interface ServiceHealthSummary {
  service: string;
  provider: string;
  state: HealthState;
  nodes: number;
  inFlight: number;
  lastSuccessAt?: number;
  lastFailureAt?: number;
}

export function summarize(lanes: LaneHealth[]): ServiceHealthSummary[] {
  const byLane = new Map<string, ServiceHealthSummary>();
  for (const l of lanes) {
    const key = `${l.service}/${l.provider}`;
    const s = byLane.get(key) ?? {
      service: l.service,
      provider: l.provider,
      state: "up",
      nodes: 0,
      inFlight: 0,
    };
    if (RANK[l.state] > RANK[s.state]) s.state = l.state;
    s.nodes++;
    s.inFlight += l.inFlight;
    s.lastSuccessAt = latest(s.lastSuccessAt, l.lastSuccessAt);
    s.lastFailureAt = latest(s.lastFailureAt, l.lastFailureAt);
    byLane.set(key, s);
  }
  return [...byLane.values()];
}

function latest(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.max(a, b);
}

/**
 * `mg.api.<agency>.health`: the summarized health of the services the
 * agency can see (all registered, non-retired services), optionally one.
 */
export function serveAgencyHealth(
  nc: NatsConnection,
  brokers: KV,
  visible: (agency: string, service: string) => boolean,
  registered: (agency: string) => boolean,
): Subscription {
  return nc.subscribe("mg.api.*.health", {
    queue: BROKER_QUEUE_GROUP,
    // Nothing may throw here: the callback runs inside the client's reader.
    callback: (_err, m) => {
      agencyHealth(m, nc, brokers, visible, registered).then(
        (health) => respond(m, { ok: true, health }),
        (err) => respond(m, { ok: false, error: toMagistralError(err).toWire() }),
      );
    },
  });
}

async function agencyHealth(
  m: Msg,
  nc: NatsConnection,
  brokers: KV,
  visible: (agency: string, service: string) => boolean,
  registered: (agency: string) => boolean,
): Promise<ServiceHealthSummary[]> {
  const agency = agencyOfApiSubject(m.subject)!;
  if (!registered(agency)) {
    throw new MagistralError(ErrorCode.ACCESS_DENIED, `agency ${agency} is not registered`);
  }
  const body = m.data.length ? decodeValue(m.data) : {};
  const wanted =
    typeof body === "object" &&
    body !== null &&
    "service" in body &&
    typeof body.service === "string"
      ? body.service
      : undefined;
  const lanes = await gatherHealth(nc, brokers);
  return summarize(lanes).filter(
    (h) => visible(agency, h.service) && (wanted === undefined || h.service === wanted),
  );
}
