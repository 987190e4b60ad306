// A service actor's lanes, one per provider: opened, re-configured and
// closed as the service's definition changes (actors/service.ts handles
// what they deliver).
import type { JsMsg } from "@nats-io/jetstream";
import type { Logger } from "../src/logger.ts";
import { idlePullHeartbeatMs, Mailbox } from "../src/mailbox.ts";
import type { NodeContext } from "../src/node-context.ts";
import { providersOf, type ServiceDef } from "../src/registry.ts";
import { lane as laneNames } from "../src/subjects.ts";
import { applyAllowance, type Lane, laneConsumerConfig, mailboxKey, newLane } from "./lane.ts";

/** A message a lane's mailbox pulled. */
export interface Delivery {
  provider: string;
  msg: JsMsg;
}

/** What of a service actor's state its lanes need. */
export interface LaneOwner {
  def: ServiceDef;
  log: Logger;
  lanes: Map<string, Lane>;
  /** Hands a delivery to the actor, in a batch with those of the same turn. */
  deliver: (item: Delivery) => void;
}

/**
 * Opens a lane per provider the service has now, and closes lanes of providers it lost.
 * LIMITATION: a closed lane's queued requests wait in MG_QUEUE, unanswered,
 * until that provider is added back.
 */
export function syncLanes(ctx: NodeContext, state: LaneOwner) {
  const { def } = state;
  const wanted = new Set(providersOf(def));
  for (const [provider, lane] of state.lanes) {
    if (!wanted.has(provider)) {
      closeLane(ctx, state, lane);
      state.lanes.delete(provider);
    }
  }
  for (const provider of wanted) {
    let lane = state.lanes.get(provider);
    if (!lane) {
      lane = openLane(ctx, state, provider);
      state.lanes.set(provider, lane);
    } else {
      lane.breaker.setPolicy(def.circuit);
      lane.mailbox.ensureConsumer().catch((err) => state.log.warn({ err }, "consumer not updated"));
    }
    applyAllowance(lane, def);
  }
}

function openLane(ctx: NodeContext, state: LaneOwner, provider: string): Lane {
  const key = mailboxKey(state.def, provider);
  // A reset after a crash builds a fresh state: stop the old mailbox first,
  // so one node never pulls the same consumer twice.
  ctx.mailboxes
    .get(key)
    ?.stop()
    .catch(() => {});
  const names = laneNames(state.def.id, provider, state.def.broadcast);
  const mailbox = new Mailbox(ctx.bus.js, ctx.bus.jsm, {
    stream: names.stream,
    durable: names.durable,
    config: () => laneConsumerConfig(state.def, provider),
    onMessage: (msg) => state.deliver({ provider, msg }),
    log: state.log.child({ provider }),
    pullHeartbeatMs: () => idlePullHeartbeatMs(ctx.mailboxes.size),
  });
  ctx.mailboxes.set(key, mailbox);
  mailbox.start();
  return newLane(state.def, provider, ctx.nodeId, mailbox);
}

export function closeLane(ctx: NodeContext, state: LaneOwner, lane: Lane) {
  clearTimeout(lane.halfOpenTimer);
  const key = mailboxKey(state.def, lane.provider);
  if (ctx.mailboxes.get(key) === lane.mailbox) ctx.mailboxes.delete(key);
  lane.mailbox.stop().catch(() => {});
}
