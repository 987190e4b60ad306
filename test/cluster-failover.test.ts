// Failover of a three-node NATS cluster with two broker nodes under steady
// load through the bus. One cluster serves the file's tests in turn, each
// with a service of its own; every test leaves all nodes running.
import { jetstreamManager } from "@nats-io/jetstream";
import anyTest, { type ExecutionContext, type TestFn } from "ava";
import type { LaneHealth } from "../actors/lane.ts";
import { moveStreamLeader, timeToFailover } from "../cluster/leaders.ts";
import {
  countingProvider,
  type LoadReport,
  SteadyLoad,
  storedAnswerCounts,
} from "../cluster/load.ts";
import { agreedMetaLeader, settledStreamViews } from "../cluster/monitor.ts";
import type { AgencyClient } from "../src/client.ts";
import { queueStream, queueStreams, STREAM } from "../src/subjects.ts";
import { cleanupList, startCluster, type TestCluster } from "./helpers/cluster.ts";

const test = anyTest as TestFn<{ cluster: TestCluster; fns: AgencyClient; mfc: AgencyClient }>;

const RATE_PER_SEC = 20;

const cleanup = cleanupList();
test.after.always(() => cleanup.run());

test.before(async (t) => {
  const cluster = await startCluster(cleanup.add, 2);
  t.context = {
    cluster,
    fns: await cluster.connect("fns"),
    mfc: await cluster.connect("mfc"),
  };
});

async function addService(t: ExecutionContext<{ cluster: TestCluster }>, id: string) {
  await t.context.cluster.admin.call("service.put", {
    service: {
      id,
      owner: "fns",
      callTimeoutMs: 1_000,
      concurrency: 16,
      retry: { attempts: 50, firstDelayMs: 200, factor: 1.5, maxDelayMs: 1_000, jitter: 0.2 },
    },
  });
}

function logReport(t: ExecutionContext, what: string, r: LoadReport) {
  t.log(
    `${what}: offered=${r.offered} accepted=${r.accepted} responded=${r.responded} ` +
      `lost=${r.lost} duplicates=${r.duplicates} abandoned=${r.abandoned} ` +
      `refusals=${r.refusals} refusedWindowMs=${r.refusedWindowMs} timeouts=${r.timeouts} ` +
      `maxAcceptMs=${r.maxAcceptMs} longestStallMs=${r.longestStallMs}`,
  );
}

/** Every accepted request answered, none twice, and REPLIES holds one answer for each. */
async function assertNothingLost(
  t: ExecutionContext<{ cluster: TestCluster }>,
  mfc: AgencyClient,
  load: SteadyLoad,
  service: string,
) {
  const report = await load.drain(30_000);
  if (report.lost > 0) await diagnose(t, mfc, load, service);
  t.is(report.lost, 0, `unanswered: ${load.unanswered().slice(0, 5).join(", ")}`);
  t.is(report.duplicates, 0);
  t.true(report.accepted > 0);
  const stored = await storedAnswerCounts(mfc);
  const twice = [...load.acceptedIds()].filter((id) => (stored.get(id) ?? 0) > 1);
  t.deepEqual(twice, [], "REPLIES stores one answer per request");
  return report;
}

async function diagnose(
  t: ExecutionContext<{ cluster: TestCluster }>,
  mfc: AgencyClient,
  load: SteadyLoad,
  service: string,
) {
  const jsm = await jetstreamManager(t.context.cluster.admin.nc);
  const stored = await storedAnswerCounts(mfc);
  const missing = load.unanswered();
  t.log(
    `unanswered ${missing.length}; stored in REPLIES: ${missing.filter((id) => stored.has(id)).length}`,
  );
  const svc = await jsm.consumers
    .info(queueStream(service), `svc_${service}`)
    .catch((e) => String(e));
  const reply = await jsm.consumers.info(STREAM.replies, "reply_mfc").catch((e) => String(e));
  t.log(JSON.stringify({ svc, reply }, null, 1).slice(0, 3000));
  t.log(`dir ${t.context.cluster.topology.dataDir}`);
}

/**
 * A service registered now is picked up by every broker node: their KV
 * watchers survived what the test did (a 2.9 watcher can stop silently
 * after a server restart).
 */
async function assertRegistryFollowed(t: ExecutionContext<{ cluster: TestCluster }>, id: string) {
  const { cluster } = t.context;
  await addService(t, id);
  const brokers = cluster.topology.brokers.map((b) => b.id).sort();
  const started = Date.now();
  let serving: string[] = [];
  while (Date.now() - started < 20_000) {
    const lanes = await cluster.admin.call<LaneHealth[]>("service.health");
    serving = lanes
      .filter((l) => l.service === id)
      .map((l) => l.node)
      .sort();
    if (serving.length === brokers.length) break;
    await sleep(250);
  }
  t.deepEqual(serving, brokers, "every broker node runs the new service's actor");
  t.log(`a new service reached every broker node in ${Date.now() - started} ms`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test.serial(
  "SIGKILL of the NATS node leading the meta group and QUEUE: nothing lost, none twice",
  async (t) => {
    const { cluster, fns, mfc } = t.context;
    await addService(t, "nats-kill");
    countingProvider(fns, "nats-kill");
    const jsm = await jetstreamManager(cluster.admin.nc, { timeout: 1_000 });

    const metaLeader = await agreedMetaLeader(cluster.topology.nats);
    t.truthy(metaLeader);
    const queue = queueStream("nats-kill");
    t.true(await moveStreamLeader(cluster.admin.nc, jsm, queue, metaLeader!));

    const load = new SteadyLoad({
      consumer: mfc,
      service: "nats-kill",
      ratePerSec: RATE_PER_SEC,
      idPrefix: "nk",
    });
    await load.start();
    await sleep(3_000);
    await cluster.launcher.stop(metaLeader!, "SIGKILL");
    const failover = await timeToFailover(cluster.topology.nats, jsm, metaLeader!, [
      queue,
      STREAM.replies,
      STREAM.events,
    ]);
    t.log(
      `killed ${metaLeader}: new meta leader in ${failover.metaMs} ms, streams led elsewhere in ${failover.streamsMs} ms`,
    );
    await sleep(5_000);
    await cluster.launcher.start(metaLeader!);
    await sleep(2_000);

    const report = await assertNothingLost(t, mfc, load, "nats-kill");
    logReport(t, "nats node kill", report);
    await assertRegistryFollowed(t, "after-nats-kill");
  },
);

test.serial(
  "SIGKILL of a broker node: its deliveries in flight are made by the other",
  async (t) => {
    const { cluster, fns, mfc } = t.context;
    await addService(t, "broker-kill");
    const retried = new Set<string>();
    fns.provide("broker-kill", async (req) => {
      if ((req.attempt ?? 1) > 1) retried.add(req.id);
      // Slow enough that each node has calls in flight when one dies.
      await sleep(300);
      return `<Response id="${req.id}"/>`;
    });

    const load = new SteadyLoad({
      consumer: mfc,
      service: "broker-kill",
      ratePerSec: RATE_PER_SEC,
      idPrefix: "bk",
    });
    await load.start();
    await sleep(3_000);
    const lanes = await cluster.admin.call<LaneHealth[]>("service.health");
    const mine = lanes.filter((l) => l.service === "broker-kill");
    t.log(
      `before the kill: ${mine.map((l) => `${l.node} delivered=${l.delivered} inFlight=${l.inFlight}`).join(", ")}`,
    );
    t.true(
      mine.length === 2 && mine.every((l) => l.delivered > 0),
      "both nodes take work from the shared consumer",
    );
    const killedAt = Date.now();
    await cluster.launcher.stop("b1", "SIGKILL");
    await sleep(4_000);
    await load.stop();
    const report = await assertNothingLost(t, mfc, load, "broker-kill");
    t.log(`all answered ${Date.now() - killedAt} ms after the kill`);
    logReport(t, "broker node kill", report);
    t.true(retried.size > 0, "some requests b1 held were delivered again by b2");
    t.log(`requests taken over from the killed node: ${retried.size}`);
    await cluster.launcher.start("b1");
  },
);

test.serial(
  "rolling restart of every NATS node and every broker node: nothing lost, stream copies agree (work queues on their last sequence)",
  async (t) => {
    const { cluster, fns, mfc } = t.context;
    await addService(t, "rolling");
    countingProvider(fns, "rolling");
    const load = new SteadyLoad({
      consumer: mfc,
      service: "rolling",
      ratePerSec: RATE_PER_SEC,
      idPrefix: "rr",
    });
    await load.start();
    await sleep(2_000);
    // Brokers first: their watchers and consumers then live through every NATS restart.
    const nodes = [
      ...cluster.topology.brokers.map((b) => b.id),
      ...cluster.topology.nats.map((n) => n.name),
    ];
    for (const node of nodes) {
      const started = Date.now();
      await cluster.launcher.restart(node);
      t.log(`${node} restarted and ready in ${Date.now() - started} ms; ${load.progress()}`);
      await sleep(1_000);
    }
    const report = await assertNothingLost(t, mfc, load, "rolling");
    logReport(t, "rolling restart", report);

    const { nats, replicas } = cluster.topology;
    const { differing, views } = await settledStreamViews(nats, replicas);
    // nats-server 2.9 can leave one copy of a work-queue stream holding
    // messages its consumer already acked (LIMITATION in src/nats.ts): for
    // the queue shards the copies must agree on their last sequence, and a
    // differing count is that fault, logged. Any other difference fails.
    const queues = new Set<string>(queueStreams());
    const serverFault = (line: string) => {
      const stream = line.split(" ")[0]!;
      const copies = views.filter((v) => v.stream === stream);
      return (
        queues.has(stream) &&
        copies.length === replicas &&
        copies.every((c) => c.lastSeq === copies[0]!.lastSeq)
      );
    };
    const faults = differing.filter(serverFault);
    if (faults.length > 0) t.log(`work-queue copies holding acked messages: ${faults.join("; ")}`);
    t.deepEqual(
      differing.filter((line) => !serverFault(line)),
      [],
      "every node's copy of every stream agrees",
    );
    const streams = new Set(views.map((v) => v.stream));
    t.true(queueStreams().every((q) => streams.has(q)) && streams.has(STREAM.replies));
    t.log(`${streams.size} streams, each with ${cluster.topology.replicas} copies that agree`);
    await assertRegistryFollowed(t, "after-rolling");
  },
);
