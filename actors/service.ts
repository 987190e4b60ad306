import { AckPolicy, DeliverPolicy, type JsMsg } from "@nats-io/jetstream";
import { dispatch, type Ref, spawn } from "nact";
import {
  type CallOutcome,
  callAndReply,
  deadLetter,
  expiresAt,
  retryDelayMs,
} from "../src/delivery.ts";
import { decodeEnvelope, type Envelope } from "../src/envelope.ts";
import { ErrorCode, type WireError } from "../src/errors.ts";
import type { Logger } from "../src/logger.ts";
import { Mailbox } from "../src/mailbox.ts";
import type { NodeContext } from "../src/node-context.ts";
import type { ServiceDef } from "../src/registry.ts";
import { consumerName, STREAM, subject } from "../src/subjects.ts";

/** Margin added to the call timeout for the consumer's ack wait. */
const ACK_MARGIN_MS = 30_000;

export type ServiceMsg =
  | { type: "update"; def: ServiceDef }
  | { type: "delivery"; msg: JsMsg }
  | { type: "settled"; msg: JsMsg; env: Envelope; attempt: number; outcome: CallOutcome }
  | { type: "deadLettered"; msg: JsMsg; env: Envelope; error: WireError; attempt: number }
  | { type: "deadLetterFailed"; msg: JsMsg; err: unknown }
  | { type: "health"; replyTo: Ref<ServiceHealth> };

export interface ServiceHealth {
  service: string;
  node: string;
  inFlight: number;
  lastSuccessAt?: number;
  lastFailureAt?: number;
  lastError?: WireError;
  delivered: number;
  failed: number;
}

interface ServiceState {
  def: ServiceDef;
  mailbox: Mailbox;
  log: Logger;
  inFlight: number;
  health: ServiceHealth;
}

export function serviceConsumerConfig(def: ServiceDef) {
  return {
    filter_subject: subject.queue(def.id),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: (def.callTimeoutMs + ACK_MARGIN_MS) * 1_000_000,
    max_deliver: -1,
    max_ack_pending: 10_000,
  };
}

/**
 * Spawns the actor that owns one service on this node: its mailbox (the
 * durable consumer shared by every broker node), its calls in flight and
 * their retries. Handlers never await: calls run as promises that report
 * back to the actor as messages.
 */
export function spawnService(parent: Ref<unknown>, ctx: NodeContext, initial: ServiceDef) {
  const log = ctx.log.child({ component: "service", service: initial.id });
  const mailboxKey = `service/${initial.id}`;
  return spawn(
    parent,
    (state: ServiceState, msg: ServiceMsg, actx) => handle(ctx, state, msg, actx.self),
    `service-${initial.id}`,
    {
      initialStateFunc: (actx) => {
        // A reset after a crash builds a fresh state: stop the old mailbox first,
        // so one node never pulls the same consumer twice.
        ctx.mailboxes
          .get(mailboxKey)
          ?.stop()
          .catch(() => {});
        const state = {
          def: initial,
          log,
          inFlight: 0,
          health: { service: initial.id, node: ctx.nodeId, inFlight: 0, delivered: 0, failed: 0 },
        } as ServiceState;
        state.mailbox = new Mailbox(ctx.bus.js, ctx.bus.jsm, {
          stream: STREAM.queue,
          durable: consumerName.service(initial.id),
          config: () => serviceConsumerConfig(state.def),
          onMessage: (msg) => dispatch(actx.self, { type: "delivery", msg }),
          log,
        });
        ctx.mailboxes.set(mailboxKey, state.mailbox);
        state.mailbox.release(initial.concurrency);
        if (initial.status !== "active") state.mailbox.pause();
        state.mailbox.start();
        return state;
      },
      afterStop: (state: ServiceState) => {
        if (ctx.mailboxes.get(mailboxKey) === state.mailbox) ctx.mailboxes.delete(mailboxKey);
        state.mailbox.stop().catch(() => {});
      },
      onCrash: (_msg, err, sctx) => {
        log.error({ err }, "service actor crashed, resetting");
        return sctx.reset;
      },
    },
  );
}

function handle(ctx: NodeContext, state: ServiceState, msg: ServiceMsg, self: Ref<ServiceMsg>) {
  switch (msg.type) {
    case "update":
      return onUpdate(state, msg.def);
    case "delivery":
      return onDelivery(ctx, state, msg.msg, self);
    case "settled":
      return onSettled(ctx, state, msg, self);
    case "deadLettered":
      return onDeadLettered(ctx, state, msg);
    case "deadLetterFailed":
      state.log.error({ err: msg.err }, "dead letter not stored, message left for redelivery");
      return finish(state);
    case "health":
      dispatch(msg.replyTo, { ...state.health, inFlight: state.inFlight });
      return state;
  }
}

function onUpdate(state: ServiceState, def: ServiceDef): ServiceState {
  const extra = def.concurrency - state.def.concurrency;
  state.def = def;
  if (extra > 0) state.mailbox.release(extra);
  if (def.status === "active") state.mailbox.resume();
  else state.mailbox.pause();
  state.mailbox.ensureConsumer().catch((err) => state.log.warn({ err }, "consumer not updated"));
  return state;
}

function onDelivery(ctx: NodeContext, state: ServiceState, msg: JsMsg, self: Ref<ServiceMsg>) {
  state.inFlight++;
  let env: Envelope;
  try {
    env = decodeEnvelope(msg.data);
  } catch (err) {
    // Only the bus writes QUEUE, so this is corruption: keep the bytes for an operator.
    state.log.error({ err, seq: msg.seq }, "undecodable message in queue, terminated");
    msg.term();
    return finish(state);
  }
  const attempt = msg.info.deliveryCount;
  const { def } = state;

  if (Date.now() >= expiresAt(env, def.retry)) {
    const error = {
      code: ErrorCode.EXPIRED,
      message: "lifetime ended before delivery",
      retryable: false,
    };
    startDeadLetter(ctx, state, msg, env, error, attempt - 1, self);
    return state;
  }

  ctx.events.emit({
    type: "attempt",
    id: env.id,
    service: def.id,
    agency: env.sender,
    attempt,
    test: env.test,
  });
  callAndReply(ctx, def, env, attempt).then((outcome) =>
    dispatch(self, { type: "settled", msg, env, attempt, outcome }),
  );
  return state;
}

function onSettled(
  ctx: NodeContext,
  state: ServiceState,
  { msg, env, attempt, outcome }: Extract<ServiceMsg, { type: "settled" }>,
  self: Ref<ServiceMsg>,
) {
  const { def, health } = state;
  const base = {
    id: env.id,
    service: def.id,
    agency: env.sender,
    provider: def.owner,
    attempt,
    test: env.test,
  };
  if (outcome.ok) {
    msg.ack();
    health.delivered++;
    health.lastSuccessAt = Date.now();
    ctx.events.emit({ ...base, type: "delivered", latencyMs: Math.round(outcome.callMs) });
    ctx.events.emit({
      ...base,
      type: "responded",
      bytes: outcome.responseBytes,
      latencyMs: sinceAccepted(msg),
    });
    return finish(state);
  }

  health.failed++;
  health.lastFailureAt = Date.now();
  health.lastError = outcome.error;
  ctx.events.emit({
    ...base,
    type: "failed",
    code: outcome.error.code,
    cause: outcome.error.message,
  });

  const delayMs = retryDelayMs(def.retry, attempt);
  const attemptsLeft = attempt < def.retry.attempts;
  if (attemptsLeft && Date.now() + delayMs < expiresAt(env, def.retry)) {
    msg.nak(delayMs);
    return finish(state);
  }
  const reason = attemptsLeft
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
  startDeadLetter(ctx, state, msg, env, reason, attempt, self);
  return state;
}

function startDeadLetter(
  ctx: NodeContext,
  state: ServiceState,
  msg: JsMsg,
  env: Envelope,
  error: WireError,
  attempt: number,
  self: Ref<ServiceMsg>,
) {
  deadLetter(ctx, state.def, env, error, attempt).then(
    () => dispatch(self, { type: "deadLettered", msg, env, error, attempt }),
    (err) => dispatch(self, { type: "deadLetterFailed", msg, err }),
  );
}

function onDeadLettered(
  ctx: NodeContext,
  state: ServiceState,
  m: Extract<ServiceMsg, { type: "deadLettered" }>,
) {
  m.msg.ack();
  const type = m.error.code === ErrorCode.EXPIRED ? "expired" : "deadlettered";
  ctx.events.emit({
    type,
    id: m.env.id,
    service: state.def.id,
    agency: m.env.sender,
    attempt: m.attempt,
    code: m.error.code,
    cause: m.error.message,
    test: m.env.test,
  });
  if (type === "expired") {
    ctx.events.emit({
      type: "deadlettered",
      id: m.env.id,
      service: state.def.id,
      agency: m.env.sender,
      code: m.error.code,
    });
  }
  return finish(state);
}

function finish(state: ServiceState): ServiceState {
  state.inFlight--;
  state.mailbox.release(1);
  return state;
}

/** Milliseconds from the message's arrival in QUEUE until now. */
function sinceAccepted(msg: JsMsg): number {
  return Math.max(0, Math.round(Date.now() - msg.info.timestampNanos / 1_000_000));
}
