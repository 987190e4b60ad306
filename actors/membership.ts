import type { KV } from "@nats-io/kv";
import { decodeValue } from "../src/envelope.ts";
import type { NodeContext } from "../src/node-context.ts";

/** A node whose heartbeat is older than this many heartbeat periods is lost. */
const MISSED_BEATS = 4;

interface Heartbeat {
  node: string;
  at: number;
}

/**
 * Every heartbeat period, reads the broker membership bucket and reports
 * each node as alive or lost to the alerts actor. Every node does this; the
 * alerts bucket makes each loss, and each return, one alert.
 */
export function watchMembership(ctx: NodeContext, bucket: KV, heartbeatMs: number): NodeJS.Timeout {
  const check = async () => {
    const keys = await bucket.keys();
    for await (const node of keys) {
      const entry = await bucket.get(node);
      if (entry?.operation !== "PUT" || entry.value.length === 0) continue;
      report(ctx, decodeValue(entry.value) as Heartbeat, heartbeatMs);
    }
  };
  const timer = setInterval(() => {
    check().catch((err) => ctx.log.debug({ err }, "membership not read"));
  }, heartbeatMs);
  timer.unref();
  return timer;
}

function report(ctx: NodeContext, beat: Heartbeat, heartbeatMs: number) {
  const silentMs = Date.now() - beat.at;
  const base = { service: "_bus", provider: beat.node, detail: { node: beat.node, silentMs } };
  if (silentMs > MISSED_BEATS * heartbeatMs) {
    ctx.alert({
      type: "transition",
      topic: "membership",
      state: "lost",
      alert: {
        ...base,
        kind: "broker_node_lost",
        severity: "critical",
        message: "broker node lost",
      },
    });
    return;
  }
  ctx.alert({
    type: "transition",
    topic: "membership",
    state: "alive",
    onlyFrom: "lost",
    alert: { ...base, kind: "broker_node_back", severity: "info", message: "broker node back" },
  });
}
