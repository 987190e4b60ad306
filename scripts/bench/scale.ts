// `npm run bench -- --scale`: the bus with 10, 1,000 and 10,000 registered
// services (one service actor and one durable consumer each): registration
// and start-up time, idle cost, throughput with load spread over every
// service, broker memory and journal bytes per message; then the same load
// against a three-node cluster with three replicas.
import { rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { freePort, type RunningNatsServer, startNatsServer } from "../../cluster/nats-server.ts";
import type { AdminClient } from "../../src/admin-client.ts";
import { AgencyClient } from "../../src/client.ts";
import {
  decodeEnvelope,
  type Envelope,
  encodeEnvelope,
  PROTOCOL_VERSION,
} from "../../src/envelope.ts";
import { newMessageId } from "../../src/ids.ts";
import { queueStreams } from "../../src/subjects.ts";
import {
  type BrokerChild,
  benchAgencies,
  benchService,
  dirBytes,
  killOnExit,
  READY_TIMEOUT_MS,
  repo,
  retry,
  startBrokerChild,
  tempDir,
} from "./broker.ts";
import { startCluster } from "./cluster.ts";
import { journalCaughtUp } from "./magistral.ts";
import {
  connTraffic,
  cpuMeter,
  payloadText,
  processMemoryMiB,
  round3,
  saturate,
  sleep,
  trafficPer,
} from "./measure.ts";
import { machine, writeResults } from "./report.ts";
import { type ClusterResult, describe, printScale, type ScaleResult } from "./scale-report.ts";

export interface ScaleOptions {
  quick: boolean;
  /** Service counts to run; defaults to 10, 1,000 and 10,000 (10 and 1,000 when quick). */
  counts?: number[];
  /** Whether to run the three-node cluster too. */
  cluster: boolean;
  /** Where the loaded broker (the one restarted with every service) writes a CPU profile. */
  cpuProfileDir?: string;
  /** Where the loaded broker writes a heap snapshot after the load. */
  heapSnapshotDir?: string;
  log: (line: string) => void;
}

const NODE_ID = "bench1";
const PAYLOAD_BYTES = 256;
/** Longer than a pull's 30 s expiry, so every mailbox renews its pull once in the window. */
const IDLE_MS = 31_000;

export async function runScale(opts: ScaleOptions): Promise<void> {
  const host = machine();
  const counts = opts.counts ?? (opts.quick ? [10, 1_000] : [10, 1_000, 10_000]);
  const saturationMs = opts.quick ? 3_000 : 8_000;
  const results: ScaleResult[] = [];
  for (const services of counts) {
    opts.log(`  ${services} services`);
    results.push(await scaleRun(services, saturationMs, opts));
  }
  let cluster: ClusterResult | undefined;
  if (opts.cluster) {
    opts.log("  three-node cluster, three replicas");
    cluster = await clusterRun(saturationMs, opts.log);
  }
  host.loadAvgAfter = os.loadavg().map((n) => Math.round(n * 100) / 100);
  printScale(results, cluster, opts.log);
  const file = writeResults(repo, "bench-scale", { machine: host, results, cluster });
  opts.log(`results in ${path.relative(repo, file)}`);
}

async function scaleRun(
  services: number,
  saturationMs: number,
  { log, cpuProfileDir, heapSnapshotDir }: ScaleOptions,
): Promise<ScaleResult> {
  const dir = tempDir("mg-scale-");
  const monitorPort = await freePort();
  const server = await startNatsServer({
    name: "scale",
    storeDir: path.join(dir, "js"),
    extraConfig: `http: "127.0.0.1:${monitorPort}"`,
  });
  killOnExit(server.process);
  const monitorUrl = `http://127.0.0.1:${monitorPort}`;
  const dataDir = path.join(dir, "broker");
  let broker = await startBrokerChild({ servers: server.url, nodeId: NODE_ID, dataDir });
  try {
    const ids = Array.from({ length: services }, (_, i) => `bench-s${i}`);
    const { admin, provider, consumer } = await benchAgencies(server.url);
    const started = performance.now();
    await registerAll(admin, ids);
    await consumersCreated(admin.nc, services, 600_000);
    const registerMs = Math.round(performance.now() - started);
    log(`    registered in ${registerMs} ms`);
    await Promise.all([consumer.close(), provider.close(), admin.close()]);

    await broker.stop();
    broker = await startBrokerChild({
      servers: server.url,
      nodeId: NODE_ID,
      dataDir,
      cpuProfileDir,
      heapSnapshotDir,
    });
    const restarted = await readyAfterRestart(server.url, broker, ids);
    log(`    restarted in ${restarted.restartMs} ms, ready in ${restarted.readyMs} ms`);
    const measured = await loadAll(server, monitorUrl, broker, ids, {
      saturationMs,
      log,
      heapSnapshot: heapSnapshotDir !== undefined,
    });
    return { services, registerMs, ...restarted, ...measured };
  } finally {
    await broker.stop();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Registers every service, a few at a time. */
async function registerAll(admin: AdminClient, ids: string[]): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++]!;
      await retry(() => admin.call("service.put", benchService(id, 64), 30_000), 60_000);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
}

async function consumersCreated(nc: NatsConnection, count: number, timeoutMs: number) {
  const jsm = await jetstreamManager(nc);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const infos = await Promise.all(queueStreams().map((name) => jsm.streams.info(name)));
    if (infos.reduce((sum, info) => sum + info.state.consumer_count, 0) >= count) return;
    await sleep(250);
  }
  throw new Error(`fewer than ${count} consumers after ${timeoutMs} ms`);
}

/**
 * A provider answering every service's calls through one wildcard
 * subscription: the SDK's provide() subscribes twice per service, and one
 * subscription keeps the provider's own cost flat, so what grows with the
 * count is the bus.
 */
async function wildcardProvider(url: string) {
  const provider = await AgencyClient.connect({ agency: "bench-provider", nats: { servers: url } });
  provider.nc.subscribe("mg.call.>", {
    queue: "bench_provider",
    callback: (_err, msg) => {
      const request = decodeEnvelope(msg.data);
      const response: Envelope = {
        v: PROTOCOL_VERSION,
        id: newMessageId(),
        kind: "response",
        service: request.service,
        correlationId: request.id,
        createdAt: Date.now(),
        payload: request.payload,
      };
      msg.respond(encodeEnvelope(response));
    },
  });
  await provider.nc.flush();
  return provider;
}

async function readyAfterRestart(url: string, broker: BrokerChild, ids: string[]) {
  const consumer = await AgencyClient.connect({ agency: "bench-consumer", nats: { servers: url } });
  const provider = await wildcardProvider(url);
  try {
    await retry(() => consumer.openReplies(), 30_000);
    const sample = Array.from(
      { length: Math.min(20, ids.length) },
      (_, i) => ids[Math.floor((i * ids.length) / Math.min(20, ids.length))]!,
    );
    await Promise.all(
      sample.map((id) =>
        retry(() => consumer.request(id, "ready", { timeoutMs: READY_TIMEOUT_MS }), 120_000),
      ),
    );
    return {
      restartMs: Math.round(broker.startMs),
      readyMs: Math.round(performance.now() - broker.spawnedAt),
    };
  } finally {
    await Promise.all([consumer.close(), provider.close()]);
  }
}

/** What an idle broker costs: its memory, CPU (its own and nats-server's) and NATS traffic. */
async function idleCost(natsPid: number, monitorUrl: string, broker: BrokerChild) {
  const connection = `magistral-${NODE_ID}`;
  const idleTraffic0 = await connTraffic(monitorUrl, connection);
  const meter = cpuMeter(natsPid, broker.pid);
  await sleep(IDLE_MS);
  const cost = meter.per(1);
  // At the end of the idle period: the services have all started and settled.
  const idleBrokerRssMiB = processMemoryMiB(broker.pid).rssMiB;
  const idleMemory = broker.memory();
  const idleTraffic = trafficPer(
    idleTraffic0,
    await connTraffic(monitorUrl, connection),
    IDLE_MS / 1_000,
  );
  const idleCpuPercent = {
    broker: round3((cost.brokerUsPerMsg ?? 0) / (IDLE_MS * 10)),
    natsServer: round3(cost.natsServerUsPerMsg / (IDLE_MS * 10)),
  };
  return { idleBrokerRssMiB, idleMemory, idleCpuPercent, idleTraffic };
}

interface LoadOptions {
  saturationMs: number;
  log: (line: string) => void;
  /** Whether to take a heap snapshot of the broker after the load. */
  heapSnapshot: boolean;
}

async function loadAll(
  server: RunningNatsServer,
  monitorUrl: string,
  broker: BrokerChild,
  ids: string[],
  { saturationMs, log, heapSnapshot }: LoadOptions,
) {
  const natsPid = server.process.pid!;
  const idle = await idleCost(natsPid, monitorUrl, broker);
  const consumer = await AgencyClient.connect({
    agency: "bench-consumer",
    nats: { servers: server.url },
  });
  const provider = await wildcardProvider(server.url);
  try {
    const text = payloadText(PAYLOAD_BYTES);
    let n = 0;
    let requests = 0;
    // Round robin over every service, so each actor and consumer takes part.
    const call = () => {
      requests++;
      return consumer.request(ids[n++ % ids.length], text, { timeoutMs: 60_000 });
    };
    // Every service's first call is measured apart: it is a lane's first
    // delivery, statistics cell and health state, and with 10,000 services
    // a short run at a few thousand a second would be made of nothing else.
    const firstRound = await saturate(call, {
      inFlight: 500,
      durationMs: 300_000,
      maxOps: Math.max(ids.length, 500),
    });
    log(`    first call of each: ${Math.round(firstRound.opsPerSec)}/s`);
    await saturate(call, { inFlight: 500, durationMs: 1_000 });
    const meter = cpuMeter(natsPid, broker.pid);
    const throughput = await saturate(call, { inFlight: 500, durationMs: saturationMs });
    const cpuUsPerMsg = meter.per(throughput.ops);
    log(`    ${Math.round(throughput.opsPerSec)}/s, p99 ${throughput.latency.p99Ms} ms`);
    await journalCaughtUp(consumer.nc, NODE_ID, 30_000);
    const memory = processMemoryMiB(broker.pid);
    const { idleMemory, ...idleRest } = idle;
    // Read before a heap snapshot, whose full collection shrinks the heap.
    const afterLoad = broker.memory();
    log(`    memory idle ${describe(idleMemory)}; after the load ${describe(afterLoad)}`);
    if (heapSnapshot) log(`    heap snapshot ${await broker.heapSnapshot()}`);
    return {
      ...idleRest,
      memoryMiB: { idle: idleMemory, afterLoad },
      firstRoundPerSec: round3(firstRound.opsPerSec),
      throughput,
      cpuUsPerMsg,
      brokerRssMiB: memory.rssMiB,
      brokerPeakRssMiB: memory.peakRssMiB,
      journalBytesPerMsg: round3(
        dirBytes(path.join(broker.dataDir, "journal", NODE_ID)) / Math.max(1, requests),
      ),
    };
  } finally {
    await Promise.all([consumer.close(), provider.close()]);
  }
}

/** One broker against three routed nats-servers, every stream and bucket with three replicas. */
async function clusterRun(
  saturationMs: number,
  log: (line: string) => void,
): Promise<ClusterResult> {
  const dir = tempDir("mg-scale-cluster-");
  const how = "three nats-server processes routed by the bench (scripts/bench/cluster.ts)";
  const cluster = await startCluster(dir);
  let broker: BrokerChild | undefined;
  try {
    broker = await startBrokerChild({
      servers: cluster.urls.join(","),
      nodeId: NODE_ID,
      dataDir: path.join(dir, "broker"),
      replicas: 3,
    });
    const { admin, provider, consumer } = await benchAgencies(cluster.urls.join(","));
    try {
      await admin.call("service.put", benchService("bench-echo", 500));
      provider.provide("bench-echo", (request) => request.payload);
      await retry(
        () => consumer.request("bench-echo", "warm", { timeoutMs: READY_TIMEOUT_MS }),
        60_000,
      );
      const text = payloadText(PAYLOAD_BYTES);
      const call = () => consumer.request("bench-echo", text, { timeoutMs: 60_000 });
      await saturate(call, { inFlight: 500, durationMs: 1_000 });
      const throughput = await saturate(call, { inFlight: 500, durationMs: saturationMs });
      log(`    ${Math.round(throughput.opsPerSec)}/s, p99 ${throughput.latency.p99Ms} ms`);
      return { replicas: 3, natsServers: 3, how, throughput };
    } finally {
      await Promise.all([consumer.close(), provider.close(), admin.close()]);
    }
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    log(`    cluster run failed: ${error}`);
    return { replicas: 3, natsServers: 3, how, error };
  } finally {
    await broker?.stop();
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
