// The mailbox's own pull protocol against a real nats-server: its limit,
// its one inbox, expiry, a vanished consumer, a restarted server.
import path from "node:path";
import {
  AckPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
} from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import test, { type ExecutionContext } from "ava";
import { startNatsServer } from "../cluster/nats-server.ts";
import { parseAckSubject } from "../src/jsmsg.ts";
import { componentLogger } from "../src/logger.ts";
import { Mailbox, type MailboxOptions } from "../src/mailbox.ts";
import { waitFor } from "./helpers/bus.ts";
import { natsServer, tempDir } from "./helpers/nats.ts";

const NEXT = "$JS.API.CONSUMER.MSG.NEXT.WORK.worker";

interface Bus {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
}

async function bus(t: ExecutionContext, url: string): Promise<Bus> {
  const nc = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({
    name: "WORK",
    subjects: ["work.>"],
    retention: RetentionPolicy.Workqueue,
  });
  return { nc, js: jetstream(nc), jsm };
}

function mailbox(
  t: ExecutionContext,
  { js, jsm }: Bus,
  onMessage: (msg: JsMsg) => void,
  extra: Partial<MailboxOptions> = {},
): Mailbox {
  const box = new Mailbox(js, jsm, {
    stream: "WORK",
    durable: "worker",
    config: () => ({ ack_policy: AckPolicy.Explicit, filter_subject: "work.>" }),
    onMessage,
    log: componentLogger("test"),
    ...extra,
  });
  t.teardown(() => box.stop());
  return box;
}

/** Reply subjects of the mailbox's pull requests, as the server sees them. */
function spyPulls(
  t: ExecutionContext,
  nc: NatsConnection,
): { replies: string[]; batches: number[] } {
  const seen = { replies: [] as string[], batches: [] as number[] };
  const sub = nc.subscribe(NEXT, {
    callback: (_err, msg) => {
      seen.replies.push(msg.reply ?? "");
      seen.batches.push(msg.json<{ batch: number }>().batch);
    },
  });
  t.teardown(() => sub.unsubscribe());
  return seen;
}

async function publish(js: JetStreamClient, count: number, from = 0): Promise<void> {
  for (let i = from; i < from + count; i++) await js.publish(`work.${i}`, new Uint8Array([i]));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test("ack subjects of both forms give the delivery's facts", (t) => {
  const short = parseAckSubject("$JS.ACK.WORK.worker.2.17.30.1700000000000000000.5");
  t.like(short, {
    domain: "",
    stream: "WORK",
    consumer: "worker",
    deliveryCount: 2,
    redelivered: true,
    streamSequence: 17,
    deliverySequence: 30,
    pending: 5,
  });
  t.is(short.timestampNanos, 1.7e18);
  const long = parseAckSubject("$JS.ACK.hub.ACCHASH.WORK.worker.1.17.30.1700000000000000000.0.xyz");
  t.like(long, { domain: "hub", account_hash: "ACCHASH", stream: "WORK", deliveryCount: 1 });
  t.like(parseAckSubject("$JS.ACK._.ACCHASH.WORK.worker.1.2.3.4.0"), { domain: "", pending: 0 });
  t.throws(() => parseAckSubject("_INBOX.abc.def"));
  t.throws(() => parseAckSubject("$JS.ACK.WORK.worker.1"));
});

test("a burst never puts more than `limit` messages out at once", async (t) => {
  const server = await natsServer(t);
  const b = await bus(t, server.url);
  const pulls = spyPulls(t, b.nc);
  let out = 0;
  let maxOut = 0;
  const received: number[] = [];
  const box: Mailbox = mailbox(t, b, (msg) => {
    out++;
    maxOut = Math.max(maxOut, out);
    received.push(msg.seq);
    setTimeout(() => {
      msg.ack();
      out--;
      box.release();
    }, 5);
  });
  box.setLimit(5);
  box.start();
  await publish(b.js, 100);
  await waitFor(() => received.length === 100, 15_000);
  t.is(maxOut, 5);
  t.deepEqual(
    received,
    Array.from({ length: 100 }, (_, i) => i + 1),
  );
  t.true(
    pulls.batches.every((n) => n >= 1 && n <= 5),
    `batches asked: ${pulls.batches}`,
  );
});

test("at limit 0 nothing is pulled and messages stay in the stream", async (t) => {
  const server = await natsServer(t);
  const b = await bus(t, server.url);
  const received: JsMsg[] = [];
  const box = mailbox(t, b, (msg) => received.push(msg));
  box.setLimit(0);
  box.start();
  await publish(b.js, 3);
  await sleep(1_000);
  t.is(received.length, 0);
  const idle = await b.jsm.consumers.info("WORK", "worker");
  t.is(idle.num_pending, 3);
  t.is(idle.num_waiting, 0);

  box.setLimit(2);
  await waitFor(() => received.length === 2);
  box.setLimit(0);
  for (const msg of received) {
    msg.ack();
    box.release();
  }
  await sleep(1_000);
  t.is(received.length, 2, "no pull at limit 0, though both were released");
  t.is((await b.jsm.streams.info("WORK")).state.messages, 1);

  box.setLimit(1);
  await waitFor(() => received.length === 3);
  t.is(received[2]!.seq, 3);
});

test("a nak with a delay brings the message back later, counted as its second delivery", async (t) => {
  const server = await natsServer(t);
  const b = await bus(t, server.url);
  const deliveries: { count: number; at: number; redelivered: boolean }[] = [];
  const box: Mailbox = mailbox(t, b, (msg) => {
    deliveries.push({
      count: msg.info.deliveryCount,
      at: Date.now(),
      redelivered: msg.redelivered,
    });
    t.is(msg.info.stream, "WORK");
    t.is(msg.info.consumer, "worker");
    t.is(msg.subject, "work.0");
    t.true(Math.abs(Number(msg.timestampNanos / 1_000_000n) - Date.now()) < 60_000);
    if (deliveries.length === 1) msg.nak(500);
    else msg.ack();
    box.release();
  });
  box.setLimit(1);
  box.start();
  await publish(b.js, 1);
  await waitFor(() => deliveries.length === 2);
  t.deepEqual(
    deliveries.map((d) => [d.count, d.redelivered]),
    [
      [1, false],
      [2, true],
    ],
  );
  t.true(deliveries[1]!.at - deliveries[0]!.at >= 400, "came back after the delay");
  await waitFor(async () => (await b.jsm.streams.info("WORK")).state.messages === 0);
});

test("a deleted consumer is created again and delivery resumes", async (t) => {
  const server = await natsServer(t);
  const b = await bus(t, server.url);
  const received: number[] = [];
  const box: Mailbox = mailbox(
    t,
    b,
    (msg) => {
      received.push(msg.data[0]!);
      msg.ack();
      box.release();
    },
    { pullHeartbeatMs: 500 },
  );
  box.setLimit(4);
  box.start();
  await publish(b.js, 1);
  await waitFor(() => received.length === 1);
  await b.jsm.consumers.delete("WORK", "worker");
  await publish(b.js, 1, 1);
  await waitFor(() => received.length === 2, 10_000);
  t.deepEqual(received, [0, 1]);
  t.truthy(await b.jsm.consumers.info("WORK", "worker"));
});

test("one inbox serves every pull, and an expired pull is renewed", async (t) => {
  const server = await natsServer(t);
  const b = await bus(t, server.url);
  const pulls = spyPulls(t, b.nc);
  const received: number[] = [];
  const box: Mailbox = mailbox(
    t,
    b,
    (msg) => {
      received.push(msg.seq);
      msg.ack();
      box.release();
    },
    { pullHeartbeatMs: 500, pullExpiresMs: 1_000 },
  );
  // One message out at a time: every message takes a pull of its own.
  box.setLimit(1);
  box.start();
  await publish(b.js, 20);
  await waitFor(() => received.length === 20);
  // Pulls expire every 2 s (four heartbeats) and are made again.
  await sleep(4_500);
  await publish(b.js, 1, 20);
  await waitFor(() => received.length === 21);
  t.true(pulls.replies.length >= 23, `${pulls.replies.length} pulls`);
  t.deepEqual(new Set(pulls.replies).size, 1, "every pull replies to the same inbox");
  t.regex(pulls.replies[0]!, /^_INBOX\./);
});

test("after the server restarts, the mailbox pulls again at once", async (t) => {
  const dir = tempDir(t);
  const spec = { name: "restart", storeDir: path.join(dir, "js") };
  let server = await startNatsServer(spec);
  t.teardown(() => server.kill());
  const b = await bus(t, server.url);
  const received: number[] = [];
  const box: Mailbox = mailbox(
    t,
    b,
    (msg) => {
      received.push(msg.data[0]!);
      msg.ack();
      box.release();
    },
    // Heartbeats this slow would take 50 s to notice the pull lost.
    { pullHeartbeatMs: 20_000 },
  );
  box.setLimit(2);
  box.start();
  await publish(b.js, 1);
  await waitFor(() => received.length === 1);

  await server.kill();
  server = await startNatsServer({ ...spec, port: server.port });
  await waitFor(async () => {
    try {
      await b.jsm.streams.info("WORK");
      return true;
    } catch {
      return false;
    }
  }, 15_000);
  await publish(b.js, 1, 1);
  await waitFor(() => received.length === 2, 10_000);
  t.deepEqual(received, [0, 1]);
});
