import {
  AckPolicy,
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { type ConnectionOptions, connect, type NatsConnection } from "@nats-io/transport-node";
import { Requester } from "./requester.ts";
import { BUCKET, queueStreams, STREAM } from "./subjects.ts";

export { AckPolicy };

const DAY_MS = 24 * 3600 * 1000;
const nanos = (ms: number) => ms * 1_000_000;

export interface BusConnection {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  kvm: Kvm;
  /** Request/reply and JetStream publishes of the hot path, without nats.js's per-call cost. */
  requests: Requester;
}

export async function connectBus(opts: ConnectionOptions): Promise<BusConnection> {
  const nc = await connect({
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    pingInterval: 10_000,
    // Stack capture per request was 9% of broker CPU at saturation (profile of npm run bench).
    noAsyncTraces: true,
    ...opts,
  });
  const jsm = await jetstreamManager(nc, { timeout: 10_000 });
  const js = jetstream(nc, { timeout: 10_000 });
  const requests = new Requester(nc, opts.inboxPrefix);
  return { nc, js, jsm, kvm: new Kvm(js), requests };
}

/** Stream definitions; `replicas` is 1 alone and 3 in a cluster. */
type StreamSpec = Partial<StreamConfig> & { name: string };

export function streamConfigs(replicas: number): StreamSpec[] {
  const base = { storage: StorageType.File, num_replicas: replicas, discard: DiscardPolicy.Old };
  return [
    // LIMITATION: with three replicas, nats-server 2.9 can leave one copy of
    // a work-queue stream holding messages its consumer already acked (seen
    // in three rolling-restart test runs on two busy cores: one copy 1, 15 or
    // 216 messages, the others none, same last sequence). The bus does not
    // repair it. Those messages cost disk; if that copy leads and a lane's
    // consumer is recreated there, their providers are called a second time
    // (their answers are de-duplicated in MG_REPLIES within its 10-minute
    // duplicate window).
    ...queueStreams().map((name, shard) => ({
      ...base,
      name,
      subjects: [`mg.queue.${shard}.>`],
      retention: RetentionPolicy.Workqueue,
      // Longer than any ack wait, so a publish retried after a lost ack is still caught.
      duplicate_window: nanos(10 * 60_000),
    })),
    {
      ...base,
      name: STREAM.replies,
      subjects: ["mg.reply.>"],
      retention: RetentionPolicy.Limits,
      max_age: nanos(7 * DAY_MS),
      // The answer to one request is stored once even if the provider answered twice.
      duplicate_window: nanos(10 * 60_000),
    },
    { ...base, name: STREAM.events, subjects: ["mg.event.>"], max_age: nanos(7 * DAY_MS) },
    { ...base, name: STREAM.notify, subjects: ["mg.notify.>"], max_age: nanos(7 * DAY_MS) },
    { ...base, name: STREAM.alerts, subjects: ["mg.alert.>"], max_age: nanos(30 * DAY_MS) },
    { ...base, name: STREAM.deadletter, subjects: ["mg.dlq.>"], max_age: nanos(30 * DAY_MS) },
  ];
}

/** Creates every stream and bucket the bus needs; existing ones are kept as they are. */
export async function ensureInfrastructure(bus: BusConnection, replicas: number): Promise<void> {
  for (const config of streamConfigs(replicas)) {
    await ensureStream(bus.jsm, config);
  }
  for (const name of [BUCKET.agencies, BUCKET.services, BUCKET.schemas, BUCKET.subscriptions]) {
    await bus.kvm.create(name, { replicas, history: 5 });
  }
  // Heartbeats of a node that died stay a day, so its loss can be seen and alerted.
  await bus.kvm.create(BUCKET.brokers, { replicas, history: 1, ttl: 24 * 3600_000 });
  await bus.kvm.create(BUCKET.alerts, { replicas, history: 1 });
  // A consumer idle for two days has a full bucket and a new day: its state may go.
  await bus.kvm.create(BUCKET.limits, { replicas, history: 1, ttl: 2 * DAY_MS });
}

async function ensureStream(jsm: JetStreamManager, config: StreamSpec): Promise<void> {
  try {
    await jsm.streams.info(config.name);
  } catch {
    await jsm.streams.add(config);
  }
}

export async function openBuckets(bus: BusConnection) {
  const open = (name: string): Promise<KV> => bus.kvm.open(name);
  return {
    agencies: await open(BUCKET.agencies),
    services: await open(BUCKET.services),
    schemas: await open(BUCKET.schemas),
    brokers: await open(BUCKET.brokers),
    subscriptions: await open(BUCKET.subscriptions),
    alerts: await open(BUCKET.alerts),
  };
}

export type Buckets = Awaited<ReturnType<typeof openBuckets>>;
