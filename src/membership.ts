import type { KV } from "@nats-io/kv";
import { decodeValue } from "./envelope.ts";

/**
 * A node that missed this many heartbeats is taken for gone (the same
 * count as the membership alerts use).
 */
export const MISSED_BEATS = 4;

/** A broker node as the brokers bucket shows it. */
export interface BrokerMember {
  node: string;
  pid?: number;
  /** When the node last wrote its heartbeat, epoch milliseconds. */
  lastBeatAt: number;
  /** Milliseconds since then, by the clock of the node that read the bucket. */
  ageMs: number;
  alive: boolean;
}

/**
 * Every broker node with a heartbeat in the bucket, alive or lately gone,
 * by node id. A node that left cleanly deleted its key and is not listed.
 * Liveness is judged by the heartbeat's age: the bucket's TTL removes a
 * dead node's entry much later, and nats-server 2.9 marks no such removal.
 *
 * LIMITATION: a node that died is listed as alive until it has missed
 * MISSED_BEATS heartbeats (20 s at the default 5 s).
 */
export async function listMembers(
  bucket: KV,
  heartbeatMs: number,
  nowMs = Date.now(),
): Promise<BrokerMember[]> {
  const keys: string[] = [];
  for await (const key of await bucket.keys()) keys.push(key);
  const entries = await Promise.all(keys.map((key) => bucket.get(key)));
  const members: BrokerMember[] = [];
  for (const entry of entries) {
    if (entry?.operation !== "PUT" || entry.value.length === 0) continue;
    const beat = decodeValue(entry.value) as { node?: unknown; at?: unknown; pid?: unknown };
    if (typeof beat.node !== "string" || typeof beat.at !== "number") continue;
    const ageMs = Math.max(0, nowMs - beat.at);
    members.push({
      node: beat.node,
      pid: typeof beat.pid === "number" ? beat.pid : undefined,
      lastBeatAt: beat.at,
      ageMs,
      alive: ageMs <= MISSED_BEATS * heartbeatMs,
    });
  }
  return members.sort((a, b) => a.node.localeCompare(b.node));
}
