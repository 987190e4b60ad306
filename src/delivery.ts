import {
  NoRespondersError,
  headers as natsHeaders,
  RequestError,
  TimeoutError,
} from "@nats-io/transport-node";
import { decodeEnvelope, type Envelope, encodeEnvelope } from "./envelope.ts";
import { ErrorCode, MagistralError, type WireError } from "./errors.ts";
import { newMessageId } from "./ids.ts";
import type { NodeContext } from "./node-context.ts";
import type { RetryPolicy, ServiceDef } from "./registry.ts";
import { lane, subject } from "./subjects.ts";

/** Headers of a DEADLETTER message: why it is there and where it was going. */
export const DLQ_HEADER = {
  reason: "Mg-Reason",
  message: "Mg-Reason-Message",
  attempts: "Mg-Attempts",
  provider: "Mg-Provider",
  node: "Mg-Node",
} as const;

export type CallOutcome =
  | { ok: true; callMs: number; responseBytes: number }
  | { ok: false; error: WireError; callMs: number };

/** Delay before attempt `attempt + 1`, after `attempt` failed. */
export function retryDelayMs(policy: RetryPolicy, attempt: number, random = Math.random): number {
  const base = Math.min(policy.maxDelayMs, policy.firstDelayMs * policy.factor ** (attempt - 1));
  const spread = base * policy.jitter;
  return Math.max(0, Math.round(base - spread + 2 * spread * random()));
}

/** When the message's lifetime ends, in epoch milliseconds. */
export function expiresAt(env: Envelope, policy: RetryPolicy): number {
  return env.createdAt + Math.min(env.ttlMs ?? policy.lifetimeMs, policy.maxLifetimeMs);
}

/** Header a replayed request carries: how many times it was replayed from DEADLETTER. */
export const REPLAY_HEADER = "mg-replay";

/**
 * The key under which a consumer receives the answer to one request from
 * one provider: the same whoever answers how often, so REPLIES stores one;
 * a replay from DEADLETTER starts a new generation and may answer again.
 */
export function replyDedupId(env: Envelope, provider: string): string {
  return `${env.id}:reply:${provider}:${env.headers?.[REPLAY_HEADER] ?? "0"}`;
}

/**
 * Calls the provider of `def` with the request and, if it answers, stores
 * the answer in REPLIES for the consumer. Resolves with the outcome; never
 * rejects.
 */
export async function callAndReply(
  ctx: NodeContext,
  def: ServiceDef,
  provider: string,
  env: Envelope,
  attempt: number,
): Promise<CallOutcome> {
  const started = performance.now();
  let answer: Envelope;
  try {
    const call = encodeEnvelope({ ...env, attempt });
    const reply = await ctx.bus.requests.request(lane(def.id, provider, def.broadcast).call, call, {
      timeoutMs: def.callTimeoutMs,
    });
    answer = decodeEnvelope(reply.data);
  } catch (err) {
    return { ok: false, error: callError(err), callMs: performance.now() - started };
  }
  const callMs = performance.now() - started;
  if (answer.kind !== "response") {
    const error = answer.error ?? {
      code: ErrorCode.PROVIDER_FAULT,
      message: "provider answered without a response",
      retryable: true,
    };
    return { ok: false, error: { ...error, code: ErrorCode.PROVIDER_FAULT }, callMs };
  }

  const response: Envelope = {
    ...answer,
    kind: "response",
    service: def.id,
    sender: provider,
    provider,
    correlationId: env.id,
    test: env.test,
  };
  const data = encodeEnvelope(response);
  try {
    await ctx.bus.requests.publishDurable(subject.reply(env.sender!), data, {
      msgID: replyDedupId(env, provider),
    });
  } catch (err) {
    return {
      ok: false,
      error: new MagistralError(ErrorCode.UNAVAILABLE, String(err)).toWire(),
      callMs,
    };
  }
  return { ok: true, callMs, responseBytes: data.length };
}

/**
 * Stores a request that will not be delivered in DEADLETTER, then tells the
 * consumer with a final status. Rejects if either could not be stored, so
 * the caller keeps the message and tries again.
 */
export async function deadLetter(
  ctx: NodeContext,
  def: ServiceDef,
  provider: string,
  env: Envelope,
  error: WireError,
  attempts: number,
): Promise<void> {
  const h = natsHeaders();
  h.set(DLQ_HEADER.reason, error.code);
  h.set(DLQ_HEADER.message, error.message.slice(0, 500));
  h.set(DLQ_HEADER.attempts, String(attempts));
  h.set(DLQ_HEADER.provider, provider);
  h.set(DLQ_HEADER.node, ctx.nodeId);
  await ctx.bus.js.publish(subject.deadletter(def.id), encodeEnvelope(env), {
    msgID: `${replyDedupId(env, provider)}:dlq`,
    headers: h,
  });
  const status: Envelope = {
    v: env.v,
    id: newMessageId(),
    kind: "status",
    service: def.id,
    sender: provider,
    provider,
    correlationId: env.id,
    createdAt: Date.now(),
    payload: new Uint8Array(0),
    error,
    test: env.test,
  };
  await ctx.bus.js.publish(subject.reply(env.sender!), encodeEnvelope(status), {
    msgID: replyDedupId(env, provider),
  });
}

/** The wire error for a failed provider call: no provider, a timeout, or a fault. */
export function callError(err: unknown): WireError {
  const noResponders =
    err instanceof NoRespondersError ||
    (err instanceof RequestError && err.isNoResponders()) ||
    (err instanceof Error && err.cause instanceof NoRespondersError);
  if (noResponders) {
    return new MagistralError(ErrorCode.NO_PROVIDER, "no provider adapter is listening").toWire();
  }
  if (err instanceof TimeoutError || (err instanceof Error && err.cause instanceof TimeoutError)) {
    return new MagistralError(
      ErrorCode.PROVIDER_TIMEOUT,
      "provider did not answer in time",
    ).toWire();
  }
  const text = err instanceof Error ? err.message : String(err);
  return new MagistralError(ErrorCode.PROVIDER_FAULT, `call failed: ${text}`).toWire();
}
