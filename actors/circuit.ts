import type { CircuitState } from "../src/circuit-breaker.ts";
import type { NodeContext } from "../src/node-context.ts";
import type { ServiceDef } from "../src/registry.ts";
import type { AlertInput } from "./alerts.ts";
import { applyAllowance, type Lane, refreshHealth } from "./lane.ts";

/** What a lane's circuit needs from its service actor. */
export interface CircuitOwner {
  ctx: NodeContext;
  def: ServiceDef;
  log: NodeContext["log"];
  /** Schedules the lane's half-open step after `delayMs`. */
  scheduleHalfOpen(lane: Lane, delayMs: number): void;
}

/** Feeds a call's outcome to the lane's circuit breaker and acts on what changed. */
export function recordOutcome(owner: CircuitOwner, lane: Lane, ok: boolean): void {
  const transition = ok ? lane.breaker.recordSuccess() : lane.breaker.recordFailure();
  if (transition) onTransition(owner, lane, transition.from, transition.to);
  refreshHealth(lane);
}

/**
 * After a lane's first successful call, clears an outage that the cluster
 * still has on record (a node that saw it went down or restarted before it
 * could see the recovery): "recovered" and "closed" are alerted only if the
 * recorded state says so.
 */
export function reconcile(owner: CircuitOwner, lane: Lane): void {
  const base = { service: owner.def.id, provider: lane.provider };
  const send = (topic: string, state: string, from: string, alert: Omit<AlertInput, "service">) =>
    owner.ctx.alert({
      type: "transition",
      topic,
      state,
      onlyFrom: from,
      alert: { ...base, ...alert },
    });
  send("health", "up", "down", {
    kind: "service_recovered",
    severity: "info",
    message: "provider answers again",
  });
  send("circuit", "closed", "open", {
    kind: "circuit_closed",
    severity: "info",
    message: "circuit closed",
  });
}

/** The open period is over: let one probe through. */
export function halfOpen(owner: CircuitOwner, lane: Lane): void {
  if (!lane.breaker.halfOpen()) return;
  owner.log.info({ provider: lane.provider }, "circuit half-open, probing");
  refreshHealth(lane);
  applyAllowance(lane, owner.def);
}

/**
 * A first trip alerts "circuit opened"; a failed probe means the provider
 * is down; closing after that means it recovered. Each is alerted once
 * across the cluster by the alerts actor.
 */
function onTransition(owner: CircuitOwner, lane: Lane, from: CircuitState, to: CircuitState) {
  const { def } = owner;
  owner.log.warn({ provider: lane.provider, from, to }, "circuit changed");
  if (to === "open") onOpened(owner, lane, from === "half-open");
  if (to === "closed") onClosed(owner, lane);
  applyAllowance(lane, def);
}

function onOpened(owner: CircuitOwner, lane: Lane, probeFailed: boolean) {
  if (probeFailed && !lane.down) {
    lane.down = true;
    raise(owner, lane, "health", "down", "service_down", "critical", "provider does not answer");
  }
  if (!probeFailed) {
    raise(owner, lane, "circuit", "open", "circuit_opened", "warning", "circuit opened");
  }
  owner.scheduleHalfOpen(lane, owner.def.circuit.openMs);
}

function onClosed(owner: CircuitOwner, lane: Lane) {
  raise(owner, lane, "circuit", "closed", "circuit_closed", "info", "circuit closed");
  if (!lane.down) return;
  lane.down = false;
  raise(owner, lane, "health", "up", "service_recovered", "info", "provider answers again");
}

function raise(
  owner: CircuitOwner,
  lane: Lane,
  topic: string,
  state: string,
  kind: AlertInput["kind"],
  severity: AlertInput["severity"],
  message: string,
) {
  const alert: AlertInput = {
    kind,
    severity,
    message,
    service: owner.def.id,
    provider: lane.provider,
    detail: { circuit: lane.breaker.state, lastError: lane.health.lastError },
  };
  owner.ctx.alert({ type: "transition", topic, state, alert });
}
