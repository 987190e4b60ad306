// Magistral end to end: the consumer submits, the broker persists the
// request in QUEUE, the service actor calls the provider, the response goes
// to REPLIES and back to the consumer; journal and statistics are on.
import path from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { consumerName, STREAM } from "../../src/subjects.ts";
import {
  benchAgencies,
  benchService,
  dirBytes,
  READY_TIMEOUT_MS,
  retry,
  startBrokerChild,
} from "./broker.ts";
import { payloadText, processMemoryMiB, round3, sleep } from "./measure.ts";
import { benchCalls, type CallBenchResult, type PhasePlan } from "./runner.ts";

export interface MagistralPayloadResult extends CallBenchResult {
  payloadBytes: number;
  brokerRssMiB: number;
  natsServerRssMiB: number;
}

export interface MagistralResult {
  byPayload: MagistralPayloadResult[];
  brokerStartMs: number;
  brokerPeakRssMiB: number;
  /** RocksDB journal (and statistics) on disk, divided by the requests journaled. */
  journalBytesPerMsg: number;
  statsBytesPerMsg: number;
  requests: number;
}

export interface MagistralOptions {
  servers: string;
  natsPid: number;
  /** nats-server's monitoring URL, to count the broker's messages. */
  monitorUrl?: string;
  dataDir: string;
  payloads: number[];
  plan: PhasePlan;
  /** Calls in flight per broker node for the service (its bulkhead). */
  serviceConcurrency: number;
  cpuProfileDir?: string;
  log: (line: string) => void;
}

const SERVICE = "bench-echo";
const NODE_ID = "bench1";

export async function benchMagistral(opts: MagistralOptions): Promise<MagistralResult> {
  const broker = await startBrokerChild({
    servers: opts.servers,
    nodeId: NODE_ID,
    dataDir: opts.dataDir,
    cpuProfileDir: opts.cpuProfileDir,
  });
  opts.log(`  broker child pid ${broker.pid} started in ${Math.round(broker.startMs)} ms`);
  const { admin, provider, consumer } = await benchAgencies(opts.servers);
  try {
    await admin.call("service.put", benchService(SERVICE, opts.serviceConcurrency));
    provider.provide(SERVICE, (request) => request.payload);
    await retry(() => consumer.request(SERVICE, "warm", { timeoutMs: READY_TIMEOUT_MS }), 30_000);

    let requests = 0;
    const byPayload: MagistralPayloadResult[] = [];
    for (const payloadBytes of opts.payloads) {
      opts.log(`  magistral e2e, ${payloadBytes} B`);
      const text = payloadText(payloadBytes);
      const call = async () => {
        requests++;
        await consumer.request(SERVICE, text, { timeoutMs: 30_000 });
      };
      const result = await benchCalls(
        call,
        opts.plan,
        {
          natsPid: opts.natsPid,
          brokerPid: broker.pid,
          loopDelay: broker.loopDelay,
          monitor: opts.monitorUrl
            ? { url: opts.monitorUrl, connection: `magistral-${NODE_ID}` }
            : undefined,
        },
        opts.log,
      );
      byPayload.push({
        payloadBytes,
        ...result,
        brokerRssMiB: processMemoryMiB(broker.pid).rssMiB,
        natsServerRssMiB: processMemoryMiB(opts.natsPid).rssMiB,
      });
    }

    await journalCaughtUp(admin.nc, NODE_ID, 30_000);
    const journalBytes = dirBytes(path.join(opts.dataDir, "journal", NODE_ID));
    const statsBytes = dirBytes(path.join(opts.dataDir, "stats", NODE_ID));
    return {
      byPayload,
      brokerStartMs: Math.round(broker.startMs),
      brokerPeakRssMiB: processMemoryMiB(broker.pid).peakRssMiB,
      journalBytesPerMsg: round3(journalBytes / Math.max(1, requests)),
      statsBytesPerMsg: round3(statsBytes / Math.max(1, requests)),
      requests,
    };
  } finally {
    await consumer.close();
    await provider.close();
    await admin.close();
    await broker.stop();
  }
}

/** Waits until this node's journal consumer has stored every EVENTS batch. */
export async function journalCaughtUp(
  nc: NatsConnection,
  nodeId: string,
  timeoutMs: number,
): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const info = await jsm.consumers
      .info(STREAM.events, consumerName.journal(nodeId))
      .catch(() => undefined);
    if (info && info.num_pending === 0 && info.num_ack_pending === 0) return;
    await sleep(200);
  }
}
