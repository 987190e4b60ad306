import type { JetStreamManager } from "@nats-io/jetstream";
import { BUCKET, STREAM } from "../src/subjects.ts";

/** One stream whose replica count was looked at. */
export interface ReplicaChange {
  stream: string;
  from: number;
  to: number;
}

/** The streams of the bus: its own, and the streams under its KV buckets. */
export function busStreamNames(): string[] {
  return [...Object.values(STREAM), ...Object.values(BUCKET).map((b) => `KV_${b}`)].sort();
}

/**
 * Sets the replica count of every stream of the bus that exists, for a
 * cluster that grew (or shrank). Brokers create missing streams with their
 * configured replicas but never change existing ones, so this is the
 * operator's step. Durable consumers follow their stream.
 *
 * LIMITATION: this cannot turn a standalone server's streams into clustered
 * ones: nats-server 2.9 does not take them into the meta group, so going
 * from one node to a cluster needs a backup and restore of every stream.
 * @returns what changed; a stream already at `replicas` is listed with from = to
 */
export async function setBusReplicas(
  jsm: JetStreamManager,
  replicas: number,
): Promise<ReplicaChange[]> {
  const changes: ReplicaChange[] = [];
  for (const name of busStreamNames()) {
    const info = await jsm.streams.info(name).catch(() => undefined);
    if (!info) continue;
    const from = info.config.num_replicas;
    if (from !== replicas)
      await jsm.streams.update(name, { ...info.config, num_replicas: replicas });
    changes.push({ stream: name, from, to: replicas });
  }
  return changes;
}
