import { jetstreamManager } from "@nats-io/jetstream";
import { moveStreamLeader, timeToFailover } from "../../cluster/leaders.ts";
import { agreedMetaLeader } from "../../cluster/monitor.ts";
import { queueStream, STREAM } from "../../src/subjects.ts";
import { type ClusterRun, clusterChaos, SERVICE, sleep } from "./cluster-run.ts";
import type { ChaosOptions, ChaosResult } from "./harness.ts";

/** How long the killed node stays down before it is started again. */
const DOWN_MS = 5_000;

/**
 * The NATS node that leads the JetStream meta group and the service's queue stream is
 * killed with SIGKILL under load, and started again a few seconds later:
 * every accepted request is answered once.
 */
export function run(opts: ChaosOptions): Promise<ChaosResult> {
  return clusterChaos(opts, killLeader);
}

async function killLeader({ launcher, admin, log }: ClusterRun): Promise<void> {
  const jsm = await jetstreamManager(admin.nc, { timeout: 1_000 });
  const leader = await agreedMetaLeader(launcher.topology.nats);
  if (!leader) throw new Error("no meta leader to kill");
  const queue = queueStream(SERVICE);
  await moveStreamLeader(admin.nc, jsm, queue, leader);
  log(`NATS node ${leader} (meta leader, ${queue} leader) killed (SIGKILL)`);
  await launcher.stop(leader, "SIGKILL");
  const failover = await timeToFailover(launcher.topology.nats, jsm, leader, [
    queue,
    STREAM.replies,
    STREAM.events,
  ]);
  log(
    `  new meta leader after ${failover.metaMs} ms, ` +
      `streams led again after ${failover.streamsMs} ms`,
  );
  await sleep(DOWN_MS);
  const started = Date.now();
  await launcher.start(leader);
  log(`NATS node ${leader} restarted, caught up in ${Date.now() - started} ms`);
}
