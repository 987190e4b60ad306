// The floor of the bus: the NATS hops one Magistral exchange makes, done
// with plain nats.js and no bus logic, the relay in a child process as the
// broker is. Its rate is what the bus's design costs on this machine, so the
// report can say how close the bus gets to it. The hops: a core request
// submits (answered once a JetStream publish of it to a work-queue stream is
// acknowledged), the relay pulls the queue, calls the provider with a core
// request, publishes the answer to a limits stream and acks, and the
// consumer pulls the answers.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import { connect, headers, nanos } from "@nats-io/transport-node";
import { killOnExit, repo, retry } from "./broker.ts";
import type { RelayConfig } from "./floor-relay.ts";
import { processMemoryMiB } from "./measure.ts";
import { benchCalls, type CallBenchResult, type PhasePlan } from "./runner.ts";

export interface FloorResult extends CallBenchResult {
  payloadBytes: number;
  /** CPU microseconds of the relay child per call at saturation (also `cpu.brokerUsPerMsg`). */
  relayUsPerCall: number;
  relayRssMiB: number;
  relayPeakRssMiB: number;
  natsServerRssMiB: number;
}

export interface FloorOptions {
  url: string;
  natsPid: number;
  /** nats-server's monitoring URL, to count the relay's messages per call. */
  monitorUrl?: string;
  payloadBytes: number;
  plan: PhasePlan;
  log: (line: string) => void;
}

const QUEUE_STREAM = "FLOOR_Q";
const REPLY_STREAM = "FLOOR_R";
const CONSUMER = "bench";
const RELAY_CONNECTION = "floor-relay";
/** Calls the relay works on at once, as the bench service's bulkhead in the bus. */
const RELAY_IN_FLIGHT = 500;
const CALL_TIMEOUT_MS = 30_000;
const DUPLICATE_WINDOW_MS = 10 * 60_000;

const relayConfig: Omit<RelayConfig, "url"> = {
  submitSubject: "floor.submit",
  idHeader: "Floor-Id",
  queueSubject: "floor.q",
  queueStream: QUEUE_STREAM,
  queueDurable: "floor_relay",
  callSubject: "floor.call",
  replySubject: `floor.reply.${CONSUMER}`,
  maxMessages: RELAY_IN_FLIGHT,
  timeoutMs: CALL_TIMEOUT_MS,
  readyLine: "floor relay ready",
};

/**
 * One payload size through the floor: streams and durable consumers set up
 * like the bus's QUEUE and REPLIES, the relay child started, the usual
 * phases (benchCalls) with the relay's CPU measured as the broker's is, and
 * everything removed afterwards. A call resolves when its answer reaches the
 * consumer.
 */
export async function benchFloor(opts: FloorOptions): Promise<FloorResult> {
  const consumerNc = await connect({ servers: opts.url, name: "floor-consumer" });
  const providerNc = await connect({ servers: opts.url, name: "floor-provider" });
  const jsm = await jetstreamManager(consumerNc);
  let relay: ChildProcess | undefined;
  try {
    await createStreams(jsm);
    providerNc.subscribe(relayConfig.callSubject, {
      callback: (_err, m) => {
        m.respond(m.data);
      },
    });
    await providerNc.flush();

    const waiting = new Map<string, () => void>();
    const replies = await jetstream(consumerNc).consumers.get(REPLY_STREAM, `reply_${CONSUMER}`);
    const answers = await replies.consume({ max_messages: RELAY_IN_FLIGHT });
    const reading = (async () => {
      for await (const m of answers) {
        waiting.get(m.headers?.get("Nats-Msg-Id") ?? "")?.();
        m.ack();
      }
    })();

    relay = await startRelay(opts.url);
    opts.log(`    relay child pid ${relay.pid}`);
    const data = new Uint8Array(opts.payloadBytes).fill(97);
    let seq = 0;
    const call = () => {
      const id = String(++seq);
      const h = headers();
      h.set(relayConfig.idHeader, id);
      const answered = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error(`no answer to floor call ${id}`));
        }, CALL_TIMEOUT_MS);
        waiting.set(id, () => {
          clearTimeout(timer);
          waiting.delete(id);
          resolve();
        });
      });
      const submitted = consumerNc.request(relayConfig.submitSubject, data, {
        headers: h,
        timeout: CALL_TIMEOUT_MS,
      });
      return Promise.all([submitted, answered]);
    };
    await retry(call, 30_000);

    const relayPid = relay.pid!;
    const result = await benchCalls(
      call,
      opts.plan,
      {
        natsPid: opts.natsPid,
        brokerPid: relayPid,
        monitor: opts.monitorUrl
          ? { url: opts.monitorUrl, connection: RELAY_CONNECTION }
          : undefined,
      },
      opts.log,
    );
    const relayMemory = processMemoryMiB(relayPid);
    answers.stop();
    await reading;
    return {
      payloadBytes: opts.payloadBytes,
      ...result,
      relayUsPerCall: result.saturation.cpu.brokerUsPerMsg ?? Number.NaN,
      relayRssMiB: relayMemory.rssMiB,
      relayPeakRssMiB: relayMemory.peakRssMiB,
      natsServerRssMiB: processMemoryMiB(opts.natsPid).rssMiB,
    };
  } finally {
    if (relay) await stopRelay(relay);
    await providerNc.drain().catch(() => {});
    await jsm.streams.delete(QUEUE_STREAM).catch(() => false);
    await jsm.streams.delete(REPLY_STREAM).catch(() => false);
    await consumerNc.drain().catch(() => {});
  }
}

/** FLOOR_Q and FLOOR_R with the bus's settings for QUEUE and REPLIES, and their consumers. */
async function createStreams(jsm: Awaited<ReturnType<typeof jetstreamManager>>): Promise<void> {
  const base = {
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    duplicate_window: nanos(DUPLICATE_WINDOW_MS),
  };
  for (const name of [QUEUE_STREAM, REPLY_STREAM]) await jsm.streams.delete(name).catch(() => 0);
  await jsm.streams.add({
    ...base,
    name: QUEUE_STREAM,
    subjects: [relayConfig.queueSubject],
    retention: RetentionPolicy.Workqueue,
  });
  await jsm.streams.add({
    ...base,
    name: REPLY_STREAM,
    subjects: ["floor.reply.>"],
    retention: RetentionPolicy.Limits,
  });
  const consumer = {
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(CALL_TIMEOUT_MS),
  };
  await jsm.consumers.add(QUEUE_STREAM, {
    ...consumer,
    durable_name: relayConfig.queueDurable,
    max_ack_pending: RELAY_IN_FLIGHT,
  });
  await jsm.consumers.add(REPLY_STREAM, {
    ...consumer,
    durable_name: `reply_${CONSUMER}`,
    filter_subject: relayConfig.replySubject,
    max_ack_pending: 10_000,
  });
}

/**
 * The relay as compiled JavaScript, as the broker child runs (`npm run bench`
 * builds it first); resolves once it prints its ready line.
 */
async function startRelay(url: string): Promise<ChildProcess> {
  const entry = path.join(repo, "dist/scripts/bench/floor-relay.js");
  if (!existsSync(entry)) throw new Error(`${entry} missing: run \`npm run build\``);
  const config: RelayConfig = { url, ...relayConfig };
  const child = spawn(process.execPath, [entry], {
    cwd: repo,
    env: { ...process.env, FLOOR_RELAY: JSON.stringify(config) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  killOnExit(child);
  await new Promise<void>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`relay did not start: ${out}`)), 30_000);
    const onData = (chunk: Buffer) => {
      out = (out + chunk.toString()).slice(-4_000);
      if (!out.includes(relayConfig.readyLine)) return;
      clearTimeout(timer);
      child.off("exit", onExit);
      resolve();
    };
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`relay exited with ${code}: ${out}`));
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", (chunk: Buffer) => {
      out = (out + chunk.toString()).slice(-4_000);
    });
    child.once("exit", onExit);
  });
  return child;
}

async function stopRelay(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(killer);
}
