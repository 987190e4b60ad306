import type { KV } from "@nats-io/kv";
import { dispatch, type Ref, spawn } from "nact";
import { decodeValue, encodeValue } from "../src/envelope.ts";
import { newMessageId } from "../src/ids.ts";
import { KvFollower } from "../src/kv-follower.ts";
import type { Logger } from "../src/logger.ts";
import { recordActorRestart } from "../src/metrics.ts";
import type { NodeContext } from "../src/node-context.ts";
import { subject } from "../src/subjects.ts";
import { Webhook } from "../src/webhook.ts";

export type AlertSeverity = "info" | "warning" | "critical";

export type AlertKind =
  | "circuit_opened"
  | "circuit_closed"
  | "service_down"
  | "service_recovered"
  | "message_deadlettered"
  | "latency_over_budget"
  | "latency_recovered"
  | "broker_node_lost"
  | "broker_node_back";

/** One operator alert, as published on `mg.alert.<severity>.<service>`. */
export interface Alert {
  id: string;
  kind: AlertKind;
  severity: AlertSeverity;
  /** The service, or `_bus` for alerts about the bus itself. */
  service: string;
  provider?: string;
  /** The broker node that raised it. */
  node: string;
  at: number;
  message: string;
  detail?: Record<string, unknown>;
}

export type AlertInput = Omit<Alert, "id" | "node" | "at">;

export type AlertsMsg =
  /** A state change of `topic` (e.g. `health`, `circuit`): alerted once across all nodes. */
  | {
      type: "transition";
      topic: string;
      state: string;
      alert: AlertInput;
      /** Alert only when the state recorded before was this one (e.g. back after lost). */
      onlyFrom?: string;
    }
  /** A one-off happening (a dead letter): alerted as it comes, throttled per service. */
  | { type: "event"; alert: AlertInput }
  | { type: "published"; alert: Alert };

/** Dead-letter alerts per service per minute before they are only counted. */
const EVENT_ALERTS_PER_MINUTE = 10;

interface AlertsState {
  /** Per dedup key, the tail of its CAS chain, so transitions of one key apply in order. */
  chains: Map<string, Promise<void>>;
  throttle: Map<string, { minute: number; count: number }>;
}

/**
 * The alerts bucket as this node last saw it (key to recorded state),
 * followed by a watch. A recovery (`onlyFrom`) whose key is not recorded in
 * that state needs no compare-and-set: every lane reports its first success
 * as a possible recovery, and with 10,000 services a broker's restart cost
 * 20,000 KV reads and writes while traffic came back (npm run bench --scale).
 */
class RecordedStates {
  private readonly states = new Map<string, string>();
  private readonly follower: KvFollower;

  constructor(ctx: NodeContext, bucket: KV, log: Logger) {
    this.follower = new KvFollower(
      ctx.bus.nc,
      bucket,
      {
        put: (key, value) => {
          const state = stateOf(value);
          if (state) this.states.set(key, state);
          else this.states.delete(key);
        },
        remove: (key) => this.states.delete(key),
      },
      log,
    );
    this.follower
      .start()
      .catch((err) => log.warn({ err }, "alert states not followed; recoveries are checked in KV"));
  }

  /**
   * Whether `key` is known not to be recorded as `state`. Only while the
   * watch is live and caught up: before the bucket is read, while the watch
   * is restarted or after it failed, every transition asks KV.
   *
   * LIMITATION: a watch that fell silent (its consumer's NATS node died)
   * is found by the follower's check within 5-10 s; until then another
   * node's "down" is not seen here, and a recovery this node's lanes report
   * of such a key in that time is not alerted (lanes on other nodes still
   * report theirs; this node's own records are kept by `record`).
   */
  knownNotIn(key: string, state: string): boolean {
    return this.follower.live && this.states.get(key) !== state;
  }

  /** What this node itself recorded in KV, before its watch brings it back. */
  record(key: string, state: string): void {
    this.states.set(key, state);
  }

  stop(): Promise<void> {
    return this.follower.stop();
  }
}

function stateOf(value: Uint8Array): string | undefined {
  if (value.length === 0) return undefined;
  try {
    return (decodeValue(value) as { state?: string }).state;
  } catch {
    return undefined;
  }
}

/**
 * Turns health transitions into operator alerts: stream ALERTS, a log line,
 * and an optional webhook. A transition is alerted by whichever node first
 * records the new state in the alerts bucket (compare-and-set), so every
 * transition gives one alert across the cluster.
 */
export function spawnAlerts(
  parent: Ref<unknown>,
  ctx: NodeContext,
  bucket: KV,
  webhookUrl?: string,
) {
  const log = ctx.log.child({ component: "alerts" });
  const webhook = webhookUrl ? new Webhook(webhookUrl, log) : undefined;
  const publish = (alert: Alert) => {
    const level =
      alert.severity === "critical" ? "error" : alert.severity === "warning" ? "warn" : "info";
    log[level]({ alert }, "operator alert");
    webhook?.send(alert);
    ctx.bus.js
      .publish(subject.alert(alert.severity, alert.service), encodeValue(alert), {
        msgID: alert.id,
      })
      .catch((err) => log.error({ err, alert: alert.id }, "alert not stored in ALERTS"));
  };
  const complete = (input: AlertInput): Alert => ({
    ...input,
    id: newMessageId(),
    node: ctx.nodeId,
    at: Date.now(),
  });

  const recorded = new RecordedStates(ctx, bucket, log);

  return spawn(
    parent,
    (state: AlertsState, msg: AlertsMsg, actx) => {
      switch (msg.type) {
        case "transition":
          onTransition(
            state,
            bucket,
            recorded,
            msg,
            () => dispatch(actx.self, { type: "published", alert: complete(msg.alert) }),
            log,
          );
          break;
        case "event":
          if (allowEvent(state, msg.alert.service)) publish(complete(msg.alert));
          break;
        case "published":
          publish(msg.alert);
          break;
      }
      return state;
    },
    "alerts",
    {
      initialState: { chains: new Map(), throttle: new Map() },
      afterStop: () => {
        recorded.stop().catch(() => {});
      },
      onCrash: (_m, err, sctx) => {
        log.error({ err }, "alerts actor crashed, resuming");
        recordActorRestart(ctx.nodeId, "alerts");
        return sctx.resume;
      },
    },
  );
}

function onTransition(
  state: AlertsState,
  bucket: KV,
  recorded: RecordedStates,
  msg: Extract<AlertsMsg, { type: "transition" }>,
  onWon: () => void,
  log: NodeContext["log"],
) {
  const key = `${msg.alert.service}.${msg.alert.provider ?? "_"}.${msg.topic}`;
  const { onlyFrom } = msg;
  const busy = state.chains.has(key);
  if (onlyFrom !== undefined && !busy && recorded.knownNotIn(key, onlyFrom)) return;
  const previous = state.chains.get(key) ?? Promise.resolve();
  const next = previous
    .then(() => claimTransition(bucket, key, msg.state, onlyFrom))
    .then((previous) => {
      if (previous === false) return;
      recorded.record(key, msg.state);
      if (onlyFrom === undefined || previous === onlyFrom) onWon();
    })
    .catch((err) => log.warn({ err, key }, "alert state not recorded"));
  state.chains.set(key, next);
  next.finally(() => {
    if (state.chains.get(key) === next) state.chains.delete(key);
  });
}

/**
 * Records `newState` under `key` unless it is already there, or, with
 * `onlyFrom`, unless the state there is another. Returns the state it
 * replaced (undefined if none) when this call changed it, false when it did
 * not.
 */
async function claimTransition(
  bucket: KV,
  key: string,
  newState: string,
  onlyFrom?: string,
): Promise<string | undefined | false> {
  for (let tries = 0; tries < 5; tries++) {
    const entry = await bucket.get(key);
    const current =
      entry?.operation === "PUT" && entry.value.length
        ? (decodeValue(entry.value) as { state: string })
        : undefined;
    if (current?.state === newState) return false;
    if (onlyFrom !== undefined && current?.state !== onlyFrom) return false;
    const value = encodeValue({ state: newState, at: Date.now() });
    try {
      if (entry) await bucket.update(key, value, entry.revision);
      else await bucket.create(key, value);
      return current?.state;
    } catch {
      // Another node moved the state meanwhile: read it again.
    }
  }
  return false;
}

function allowEvent(state: AlertsState, service: string): boolean {
  const minute = Math.floor(Date.now() / 60_000);
  const t = state.throttle.get(service);
  if (!t || t.minute !== minute) {
    state.throttle.set(service, { minute, count: 1 });
    return true;
  }
  t.count++;
  return t.count <= EVENT_ALERTS_PER_MINUTE;
}
