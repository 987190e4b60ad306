import type { JsMsg } from "@nats-io/jetstream";
import { dispatch, type Ref, spawn } from "nact";
import { coalescing } from "../src/coalesce.ts";
import {
  type CallOutcome,
  callAndReply,
  deadLetter,
  expiresAt,
  retryDelayMs,
} from "../src/delivery.ts";
import { decodeEnvelope, type Envelope } from "../src/envelope.ts";
import { ErrorCode, type WireError } from "../src/errors.ts";
import { recordActorRestart } from "../src/metrics.ts";
import type { NodeContext } from "../src/node-context.ts";
import type { ServiceDef } from "../src/registry.ts";
import { type CircuitOwner, halfOpen, reconcile, recordOutcome } from "./circuit.ts";
import {
  attemptOf,
  finish,
  healthNow,
  type Lane,
  type LaneHealth,
  mayCall,
  putBack,
  sinceAccepted,
  trackLatency,
} from "./lane.ts";
import { closeLane, type Delivery, type LaneOwner, syncLanes } from "./service-lanes.ts";

/** A provider call that ended, with what it was for. */
interface Settled {
  provider: string;
  msg: JsMsg;
  env: Envelope;
  attempt: number;
  outcome: CallOutcome;
}

export type ServiceMsg =
  | { type: "update"; def: ServiceDef }
  /** Deliveries and settled calls come in batches: see `coalescing`. */
  | { type: "deliveries"; items: Delivery[] }
  | { type: "settled"; items: Settled[] }
  | {
      type: "deadLettered";
      provider: string;
      msg: JsMsg;
      env: Envelope;
      error: WireError;
      attempt: number;
    }
  | { type: "deadLetterFailed"; provider: string; msg: JsMsg; err: unknown }
  | { type: "halfOpen"; provider: string }
  | { type: "health"; replyTo: Ref<LaneHealth[]> };

type Of<T extends ServiceMsg["type"]> = Extract<ServiceMsg, { type: T }>;

interface ServiceState extends LaneOwner {
  /** Hands a settled call to this actor, in a batch with those of the same turn. */
  settle: (item: Settled) => void;
}

/** Codes that count against the provider's circuit; bus-side failures do not. */
const PROVIDER_FAILURES: ReadonlySet<string> = new Set([
  ErrorCode.NO_PROVIDER,
  ErrorCode.PROVIDER_TIMEOUT,
  ErrorCode.PROVIDER_FAULT,
]);

/**
 * Spawns the actor that owns one service on this node: one lane per
 * provider (its mailbox, circuit breaker, health), the calls in flight and
 * their retries. Handlers never await: calls run as promises that report
 * back to the actor as messages.
 */
export function spawnService(parent: Ref<unknown>, ctx: NodeContext, initial: ServiceDef) {
  const log = ctx.log.child({ component: "service", service: initial.id });
  return spawn(
    parent,
    (state: ServiceState, msg: ServiceMsg, actx) => handle(ctx, state, msg, actx.self),
    `service-${initial.id}`,
    {
      initialStateFunc: (actx) => {
        const self = actx.self;
        const state: ServiceState = {
          def: initial,
          log,
          lanes: new Map(),
          deliver: coalescing((items) => dispatch(self, { type: "deliveries", items })),
          settle: coalescing((items) => dispatch(self, { type: "settled", items })),
        };
        syncLanes(ctx, state);
        return state;
      },
      afterStop: (state: ServiceState) => {
        for (const lane of state.lanes.values()) closeLane(ctx, state, lane);
      },
      onCrash: (_msg, err, sctx) => {
        log.error({ err }, "service actor crashed, resetting");
        recordActorRestart(ctx.nodeId, "service");
        return sctx.reset;
      },
    },
  );
}

function handle(ctx: NodeContext, state: ServiceState, msg: ServiceMsg, self: Ref<ServiceMsg>) {
  const lane = "provider" in msg ? state.lanes.get(msg.provider) : undefined;
  switch (msg.type) {
    case "update":
      state.def = msg.def;
      syncLanes(ctx, state);
      return state;
    case "health":
      dispatch(msg.replyTo, [...state.lanes.values()].map(healthNow));
      return state;
    case "deliveries":
      for (const item of msg.items) {
        const owner = state.lanes.get(item.provider);
        // A lane closed meanwhile: unacked, the message comes back after its ack wait.
        if (owner) onDelivery(ctx, state, owner, item.msg, self);
      }
      return state;
    case "settled":
      for (const item of msg.items) {
        const owner = state.lanes.get(item.provider);
        if (owner) onSettled(ctx, state, owner, item, self);
      }
      return state;
  }
  if (!lane) return state;
  switch (msg.type) {
    case "deadLettered":
      onDeadLettered(ctx, state, lane, msg);
      break;
    case "deadLetterFailed":
      state.log.error({ err: msg.err }, "dead letter not stored, message left for redelivery");
      msg.msg.nak(1_000);
      finish(lane);
      break;
    case "halfOpen":
      halfOpen(circuitOwner(ctx, state, self), lane);
      break;
  }
  return state;
}

function onDelivery(
  ctx: NodeContext,
  state: ServiceState,
  lane: Lane,
  msg: JsMsg,
  self: Ref<ServiceMsg>,
) {
  lane.health.inFlight++;
  let env: Envelope;
  try {
    env = decodeEnvelope(msg.data);
  } catch (err) {
    // Only the bus writes QUEUE, so this is corruption: keep the bytes for an operator.
    state.log.error({ err, seq: msg.seq }, "undecodable message in queue, terminated");
    msg.term();
    return finish(lane);
  }
  const attempt = attemptOf(lane, msg);
  const { def } = state;
  if (Date.now() >= expiresAt(env, def.retry)) {
    const error = {
      code: ErrorCode.EXPIRED,
      message: "lifetime ended before delivery",
      retryable: false,
    };
    return startDeadLetter(ctx, state, lane, msg, env, error, attempt - 1, self);
  }
  if (attempt > def.retry.attempts) {
    // Redelivered after its last attempt (a dead letter not stored, an ack
    // lost): the policy allows no more calls, so it goes straight to DEADLETTER.
    const error = {
      code: ErrorCode.PROVIDER_FAULT,
      message: `attempts spent (${def.retry.attempts})`,
      retryable: false,
    };
    return startDeadLetter(ctx, state, lane, msg, env, error, attempt - 1, self);
  }
  if (!mayCall(lane)) {
    // Pulled as the circuit opened, or a second call while probing: back until the probe.
    putBack(lane, msg, lane.breaker.openedAt + def.circuit.openMs - Date.now() + 50);
    return finish(lane);
  }
  lane.calling++;
  ctx.events.emit({
    type: "attempt",
    id: env.id,
    service: def.id,
    agency: env.sender,
    provider: lane.provider,
    attempt,
    test: env.test,
  });
  const provider = lane.provider;
  callAndReply(ctx, def, provider, env, attempt).then((outcome) =>
    state.settle({ provider, msg, env, attempt, outcome }),
  );
}

function onSettled(
  ctx: NodeContext,
  state: ServiceState,
  lane: Lane,
  m: Settled,
  self: Ref<ServiceMsg>,
) {
  const { def } = state;
  const { msg, env, attempt, outcome } = m;
  lane.calling = Math.max(0, lane.calling - 1);
  const base = {
    id: env.id,
    service: def.id,
    agency: env.sender,
    provider: lane.provider,
    attempt,
    test: env.test,
  };
  if (outcome.ok) {
    msg.ack();
    if (!lane.reconciled) {
      lane.reconciled = true;
      reconcile(circuitOwner(ctx, state, self), lane);
    }
    lane.skipped.delete(msg.seq);
    lane.health.delivered++;
    lane.health.lastSuccessAt = Date.now();
    ctx.events.emit({ ...base, type: "delivered", latencyMs: Math.round(outcome.callMs) });
    ctx.events.emit({
      ...base,
      type: "responded",
      bytes: outcome.responseBytes,
      latencyMs: sinceAccepted(msg),
    });
    const latency = trackLatency(lane, def, outcome.callMs);
    if (latency)
      ctx.alert({
        type: "transition",
        topic: "latency",
        state: lane.slow ? "slow" : "ok",
        alert: latency,
      });
    recordOutcome(circuitOwner(ctx, state, self), lane, true);
    return finish(lane);
  }

  lane.health.failed++;
  lane.health.lastFailureAt = Date.now();
  lane.health.lastError = outcome.error;
  if (PROVIDER_FAILURES.has(outcome.error.code))
    recordOutcome(circuitOwner(ctx, state, self), lane, false);

  const delayMs = retryDelayMs(def.retry, attempt);
  // A provider may say its fault is final (the request can never succeed): no retry then.
  const final = !outcome.error.retryable;
  const attemptsLeft = attempt < def.retry.attempts && !final;
  const nextAt = Date.now() + delayMs;
  const willRetry = attemptsLeft && nextAt < expiresAt(env, def.retry);
  ctx.events.emit({
    ...base,
    type: "failed",
    code: outcome.error.code,
    cause: outcome.error.message,
    ...(willRetry ? { nextAt } : {}),
  });
  if (willRetry) {
    msg.nak(delayMs);
    return finish(lane);
  }
  const reason = final
    ? { ...outcome.error, message: `provider refused for good: ${outcome.error.message}` }
    : attemptsLeft
      ? {
          code: ErrorCode.EXPIRED,
          message: "lifetime ends before the next attempt",
          retryable: false,
        }
      : {
          ...outcome.error,
          message: `attempts spent; last: ${outcome.error.message}`,
          retryable: false,
        };
  startDeadLetter(ctx, state, lane, msg, env, reason, attempt, self);
}

function circuitOwner(ctx: NodeContext, state: ServiceState, self: Ref<ServiceMsg>): CircuitOwner {
  return {
    ctx,
    def: state.def,
    log: state.log,
    scheduleHalfOpen(lane, delayMs) {
      clearTimeout(lane.halfOpenTimer);
      const provider = lane.provider;
      lane.halfOpenTimer = setTimeout(
        () => dispatch(self, { type: "halfOpen", provider }),
        delayMs,
      );
      lane.halfOpenTimer.unref();
    },
  };
}

function startDeadLetter(
  ctx: NodeContext,
  state: ServiceState,
  lane: Lane,
  msg: JsMsg,
  env: Envelope,
  error: WireError,
  attempt: number,
  self: Ref<ServiceMsg>,
) {
  const provider = lane.provider;
  deadLetter(ctx, state.def, provider, env, error, attempt).then(
    () => dispatch(self, { type: "deadLettered", provider, msg, env, error, attempt }),
    (err) => dispatch(self, { type: "deadLetterFailed", provider, msg, err }),
  );
}

function onDeadLettered(ctx: NodeContext, state: ServiceState, lane: Lane, m: Of<"deadLettered">) {
  m.msg.ack();
  lane.skipped.delete(m.msg.seq);
  const { def } = state;
  const base = {
    id: m.env.id,
    service: def.id,
    agency: m.env.sender,
    provider: lane.provider,
    test: m.env.test,
  };
  const detail = { code: m.error.code, cause: m.error.message };
  if (m.error.code === ErrorCode.EXPIRED)
    ctx.events.emit({ ...base, ...detail, type: "expired", attempt: m.attempt });
  ctx.events.emit({ ...base, ...detail, type: "deadlettered", attempt: m.attempt });
  ctx.alert({
    type: "event",
    alert: {
      kind: "message_deadlettered",
      severity: "warning",
      service: def.id,
      provider: lane.provider,
      message: "message dead-lettered",
      detail: { id: m.env.id, consumer: m.env.sender, attempts: m.attempt, ...detail },
    },
  });
  finish(lane);
}
