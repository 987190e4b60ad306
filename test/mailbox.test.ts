import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import test from "ava";
import { componentLogger } from "../src/logger.ts";
import { idlePullHeartbeatMs, Mailbox } from "../src/mailbox.ts";
import { QUEUE_SHARDS, queueShard, queueStream, subject } from "../src/subjects.ts";
import { waitFor } from "./helpers/bus.ts";
import { natsServer } from "./helpers/nats.ts";

test("idle pulls keep the 2 s heartbeat up to 1,000 mailboxes, then spend ~500 a second", (t) => {
  t.is(idlePullHeartbeatMs(1), 2_000);
  t.is(idlePullHeartbeatMs(1_000), 2_000);
  t.is(idlePullHeartbeatMs(10_000), 20_000);
  t.is(10_000 / (idlePullHeartbeatMs(10_000) / 1000), 500);
});

test("a mailbox looks its consumer up once, not before every pull", async (t) => {
  const server = await natsServer(t);
  const nc = await connect({ servers: server.url });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  await jsm.streams.add({ name: "WORK", subjects: ["work.>"] });
  let lookups = 0;
  const spy = nc.subscribe("$JS.API.CONSUMER.INFO.WORK.>", {
    callback: () => {
      lookups++;
    },
  });
  t.teardown(() => spy.unsubscribe());

  const received: number[] = [];
  const mailbox: Mailbox = new Mailbox(js, jsm, {
    stream: "WORK",
    durable: "worker",
    config: () => ({ ack_policy: AckPolicy.Explicit, filter_subject: "work.>" }),
    onMessage: (msg) => {
      received.push(msg.seq);
      msg.ack();
      mailbox.release();
    },
    log: componentLogger("test"),
  });
  // One message out at a time: every message takes a pull of its own.
  mailbox.setLimit(1);
  mailbox.start();
  t.teardown(() => mailbox.stop());
  for (let i = 0; i < 30; i++) await js.publish(`work.${i}`, new Uint8Array([i]));
  await waitFor(() => received.length === 30, 10_000);
  await nc.flush();
  t.deepEqual(
    received,
    Array.from({ length: 30 }, (_, i) => i + 1),
  );
  // One lookup, by ensureConsumer: pulls go to the consumer's subject without one.
  t.is(lookups, 1, `${lookups} consumer lookups for 30 pulls`);
});

test("each service's requests wait in one queue stream, and services spread over all of them", (t) => {
  const ids = Array.from({ length: 4_000 }, (_, i) => `svc-${i}`);
  const perShard = new Array<number>(QUEUE_SHARDS).fill(0);
  for (const id of ids) {
    const shard = queueShard(id);
    t.is(queueShard(id), shard);
    t.is(queueStream(id), `MG_QUEUE_${shard}`);
    t.true(subject.queue(id).startsWith(`mg.queue.${shard}.`));
    perShard[shard]++;
  }
  const even = ids.length / QUEUE_SHARDS;
  t.true(
    perShard.every((n) => n > even * 0.8 && n < even * 1.2),
    `services per stream: ${perShard}`,
  );
});
