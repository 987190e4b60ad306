// The floor the bus is measured against: raw JetStream (durable publish and
// consume+ack) and raw core NATS request/reply, through the same client
// library the bus uses (@nats-io v3), on the same server.
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type CpuCost, cpuMeter, type SaturationResult, saturate, sleep } from "./measure.ts";
import { benchCalls, type CallBenchResult, type Measured, type PhasePlan } from "./runner.ts";

export interface JetStreamResult {
  payloadBytes: number;
  /** Async publish with an ack per message, bounded in flight, each with a msgID. */
  publish: Measured<SaturationResult>;
  /** Consume and ack what was published. */
  consume: { messages: number; elapsedMs: number; opsPerSec: number; cpu: CpuCost };
  /** Publish-to-ack latency at fixed offered rates. */
  latency: CallBenchResult;
}

const STREAM = "BENCH_RAW";
const CONSUME_BUFFER_BYTES = 16 * 1024 * 1024;

/**
 * Raw JetStream: publishes to a file-backed stream with `inFlight` acks
 * outstanding, then reads every message back through a durable pull consumer
 * and acks it.
 */
export async function benchJetStream(
  url: string,
  natsPid: number,
  payloadBytes: number,
  plan: PhasePlan,
  log: (line: string) => void,
): Promise<JetStreamResult> {
  const nc = await connect({ servers: url, name: "bench-raw-js" });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(STREAM).catch(() => false);
    await jsm.streams.add({
      name: STREAM,
      subjects: ["bench.js.>"],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
    });
    const js = jetstream(nc, { timeout: 10_000 });
    const data = new Uint8Array(payloadBytes).fill(97);
    let seq = 0;
    const publish = () => js.publish("bench.js.data", data, { msgID: `m${++seq}` });

    await saturate(publish, { inFlight: plan.inFlight, durationMs: plan.warmupMs });
    const published0 = seq;
    const meter = cpuMeter(natsPid);
    const pub = await saturate(publish, { inFlight: plan.inFlight, durationMs: plan.saturationMs });
    const publishResult = { ...pub, cpu: meter.per(pub.ops) };
    log(`    publish: ${Math.round(pub.opsPerSec)}/s, p99 ${pub.latency.p99Ms} ms`);

    const consume = await consumeAll(nc, natsPid, published0, seq - published0, payloadBytes);
    log(`    consume+ack: ${Math.round(consume.opsPerSec)}/s`);

    const latency = await benchCalls(
      publish,
      { ...plan, warmupMs: 0, saturationMs: 200 },
      { natsPid },
      log,
    );
    await jsm.streams.delete(STREAM).catch(() => false);
    return { payloadBytes, publish: publishResult, consume, latency };
  } finally {
    await nc.drain().catch(() => {});
  }
}

/** Reads `count` messages from stream sequence `afterSeq + 1` on, acking each. */
async function consumeAll(
  nc: NatsConnection,
  natsPid: number,
  afterSeq: number,
  count: number,
  payloadBytes: number,
) {
  const jsm = await jetstreamManager(nc);
  await jsm.consumers.add(STREAM, {
    durable_name: "bench_reader",
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: afterSeq + 1,
    max_ack_pending: 10_000,
  });
  const consumer = await jetstream(nc).consumers.get(STREAM, "bench_reader");
  const meter = cpuMeter(natsPid);
  const started = performance.now();
  // About 16 MiB asked for at once: 1,000 messages of 64 KiB read at a few hundred a second.
  const batch = Math.max(64, Math.min(1_000, Math.floor(CONSUME_BUFFER_BYTES / payloadBytes)));
  const messages = await consumer.consume({ max_messages: batch });
  let read = 0;
  const deadline = started + 60_000;
  for await (const m of messages) {
    m.ack();
    if (++read >= count || performance.now() > deadline) break;
  }
  messages.stop();
  // The last acks are sent before the clock stops, so the rate counts them.
  await nc.flush();
  const elapsedMs = performance.now() - started;
  await sleep(10);
  return {
    messages: read,
    elapsedMs,
    opsPerSec: (read / elapsedMs) * 1_000,
    cpu: meter.per(read),
  };
}

/** Raw core NATS request/reply with an echoing responder on its own connection. */
export async function benchCoreRequest(
  url: string,
  natsPid: number,
  payloadBytes: number,
  plan: PhasePlan,
  log: (line: string) => void,
): Promise<CallBenchResult> {
  const responder = await connect({ servers: url, name: "bench-core-responder" });
  const requester = await connect({ servers: url, name: "bench-core-requester" });
  try {
    responder.subscribe("bench.core.echo", {
      callback: (_err, m) => {
        m.respond(m.data);
      },
    });
    await responder.flush();
    const data = new Uint8Array(payloadBytes).fill(97);
    const call = () => requester.request("bench.core.echo", data, { timeout: 10_000 });
    return await benchCalls(call, plan, { natsPid }, log);
  } finally {
    await requester.drain().catch(() => {});
    await responder.drain().catch(() => {});
  }
}
