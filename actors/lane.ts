import type { JsMsg } from "@nats-io/jetstream";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { CircuitBreaker, type CircuitState } from "../src/circuit-breaker.ts";
import type { WireError } from "../src/errors.ts";
import type { Mailbox } from "../src/mailbox.ts";
import type { ServiceDef } from "../src/registry.ts";
import { lane as laneNames } from "../src/subjects.ts";
import type { AlertInput } from "./alerts.ts";

/**
 * Ack wait of a lane's consumer: room for the call and for storing its
 * answer. A delivery unanswered for this long (its node died) goes to
 * another node.
 */
export function ackWaitMs(def: ServiceDef): number {
  return 2 * def.callTimeoutMs + 5_000;
}
/** Calls whose median time is compared with the latency budget. */
const LATENCY_SAMPLE = 5;

export type HealthState = "up" | "degraded" | "down";

/** Health of one provider lane of a service on one broker node. */
export interface LaneHealth {
  service: string;
  provider: string;
  node: string;
  state: HealthState;
  circuit: CircuitState;
  inFlight: number;
  delivered: number;
  failed: number;
  lastSuccessAt?: number;
  lastFailureAt?: number;
  lastError?: WireError;
}

/**
 * One provider's share of a service on this node: its mailbox (durable
 * consumer), circuit breaker and health. A plain service has one lane.
 */
export interface Lane {
  provider: string;
  mailbox: Mailbox;
  breaker: CircuitBreaker;
  health: LaneHealth;
  /** Set once a probe failed after the circuit opened: the provider is down. */
  down: boolean;
  slow: boolean;
  recentCallMs: number[];
  halfOpenTimer?: NodeJS.Timeout;
  /** Set after the lane's first success, once the cluster's alert state is reconciled. */
  reconciled: boolean;
  /** Calls currently running (half-open lets one through). */
  calling: number;
  /**
   * Deliveries put back without a call (pulled while the circuit was open),
   * by stream sequence: they do not count as attempts.
   */
  skipped: Map<number, number>;
}

export function newLane(def: ServiceDef, provider: string, node: string, mailbox: Mailbox): Lane {
  return {
    provider,
    mailbox,
    breaker: new CircuitBreaker(def.circuit),
    health: {
      service: def.id,
      provider,
      node,
      state: "up",
      circuit: "closed",
      inFlight: 0,
      delivered: 0,
      failed: 0,
    },
    down: false,
    slow: false,
    recentCallMs: [],
    calling: 0,
    reconciled: false,
    skipped: new Map(),
  };
}

export function laneConsumerConfig(def: ServiceDef, provider: string) {
  return {
    filter_subject: laneNames(def.id, provider, def.broadcast).queue,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: ackWaitMs(def) * 1_000_000,
    max_deliver: -1,
    max_ack_pending: 10_000,
  };
}

/** Sets how many calls the lane may have in flight, from its circuit and the service status. */
export function applyAllowance(lane: Lane, def: ServiceDef): void {
  // A retired service takes no new requests but still delivers those it
  // accepted; a suspended one holds them until it is resumed.
  const concurrency = def.status === "suspended" ? 0 : def.concurrency;
  lane.mailbox.setLimit(lane.breaker.allowance(concurrency));
}

export function refreshHealth(lane: Lane): void {
  const { breaker, health } = lane;
  health.circuit = breaker.state;
  if (breaker.state === "open" && lane.down) health.state = "down";
  else if (breaker.state !== "closed" || breaker.failureRatio() > 0) health.state = "degraded";
  else health.state = "up";
}

/** Records a call time; returns an alert when the lane crosses its latency budget. */
export function trackLatency(lane: Lane, def: ServiceDef, callMs: number): AlertInput | undefined {
  lane.recentCallMs.push(callMs);
  if (lane.recentCallMs.length > LATENCY_SAMPLE) lane.recentCallMs.shift();
  if (lane.recentCallMs.length < LATENCY_SAMPLE) return undefined;
  const sorted = [...lane.recentCallMs].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  const slow = median > def.latencyBudgetMs;
  if (slow === lane.slow) return undefined;
  lane.slow = slow;
  const base = {
    service: def.id,
    provider: lane.provider,
    detail: { medianMs: Math.round(median), budgetMs: def.latencyBudgetMs },
  };
  return slow
    ? {
        ...base,
        kind: "latency_over_budget",
        severity: "warning",
        message: "provider slower than its latency budget",
      }
    : {
        ...base,
        kind: "latency_recovered",
        severity: "info",
        message: "provider back within its latency budget",
      };
}

const MAX_SKIPPED = 10_000;

/**
 * The attempt number of this delivery: JetStream's delivery count less the
 * deliveries this node put back without calling the provider.
 */
// LIMITATION: the put-back count lives in the node's memory; after a broker
// restart, a message that was put back while a circuit was open counts those
// deliveries as attempts, so it may be dead-lettered an attempt or two early.
export function attemptOf(lane: Lane, msg: JsMsg): number {
  return Math.max(1, msg.info.deliveryCount - (lane.skipped.get(msg.seq) ?? 0));
}

/** Puts a delivery back without calling the provider, due again after `delayMs`. */
export function putBack(lane: Lane, msg: JsMsg, delayMs: number): void {
  lane.skipped.set(msg.seq, (lane.skipped.get(msg.seq) ?? 0) + 1);
  if (lane.skipped.size > MAX_SKIPPED) {
    const oldest = lane.skipped.keys().next().value;
    if (oldest !== undefined) lane.skipped.delete(oldest);
  }
  msg.nak(Math.max(0, delayMs));
}

/** Whether a delivery may be called now, given the circuit. */
export function mayCall(lane: Lane): boolean {
  if (lane.breaker.state === "open") return false;
  return lane.breaker.state === "closed" || lane.calling === 0;
}

/** The lane is done with one delivery: its slot is free again. */
export function finish(lane: Lane): void {
  lane.health.inFlight = Math.max(0, lane.health.inFlight - 1);
  lane.mailbox.release();
}

/** Milliseconds from the message's arrival in QUEUE until now. */
export function sinceAccepted(msg: JsMsg): number {
  return Math.max(0, Math.round(Date.now() - msg.info.timestampNanos / 1_000_000));
}

/** Key of a lane's mailbox among the node's mailboxes. */
export function mailboxKey(def: ServiceDef, provider: string): string {
  return `service/${def.id}/${provider}`;
}

/** The lane's health as of now (an idle lane's state ages with its window). */
export function healthNow(lane: Lane): LaneHealth {
  refreshHealth(lane);
  return { ...lane.health };
}
