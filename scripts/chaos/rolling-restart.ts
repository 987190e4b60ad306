import { settledStreamViews } from "../../cluster/monitor.ts";
import { type ClusterRun, clusterChaos, sleep } from "./cluster-run.ts";
import type { ChaosOptions, ChaosResult } from "./harness.ts";

/** Pause between two restarts, so each starts from a settled cluster. */
const BETWEEN_MS = 1_000;

/**
 * Every broker node and then every NATS node is stopped in order (SIGTERM)
 * and started again, one at a time, under load: nothing accepted is lost,
 * and afterwards every NATS node holds the same copy of every stream.
 */
export function run(opts: ChaosOptions): Promise<ChaosResult> {
  return clusterChaos(opts, restartAll, compareCopies);
}

async function restartAll({ launcher, log }: ClusterRun): Promise<void> {
  // Brokers first: their watchers and consumers then live through every NATS restart.
  const nodes = [
    ...launcher.topology.brokers.map((b) => b.id),
    ...launcher.topology.nats.map((n) => n.name),
  ];
  for (const node of nodes) {
    const started = Date.now();
    await launcher.restart(node);
    log(`${node} restarted, ready in ${Date.now() - started} ms`);
    await sleep(BETWEEN_MS);
  }
}

/** After the load drained: every node's copy of every stream is the same. */
async function compareCopies({ launcher, log }: ClusterRun): Promise<void> {
  const { nats, replicas } = launcher.topology;
  const { views, differing } = await settledStreamViews(nats, replicas);
  const streams = new Set(views.map((v) => v.stream)).size;
  log(
    differing.length === 0
      ? `all ${streams} streams: the ${replicas} copies agree (last sequence, message count)`
      : `stream copies disagree: ${differing.join("; ")}`,
  );
}
