// The relay child of the floor benchmark (scripts/bench/floor.ts): the NATS
// hops a Magistral broker makes for one exchange, in a process of its own as
// the broker is, with plain nats.js and no bus logic, so what is left is what
// the bus's design costs. Configured by the FLOOR_RELAY environment variable
// (JSON, a RelayConfig); prints its ready line on stdout once it serves.
import { type JsMsg, jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";

/** What floor.ts tells the relay, as JSON in FLOOR_RELAY. */
export interface RelayConfig {
  url: string;
  /** Core requests of the consumer, each with the call's id in the `idHeader` header. */
  submitSubject: string;
  idHeader: string;
  /** Subject of the work-queue stream the relay publishes each submit to. */
  queueSubject: string;
  queueStream: string;
  queueDurable: string;
  /** The provider's echo, called with a core request for each queued message. */
  callSubject: string;
  /** Subject of the limits stream the answers are published to. */
  replySubject: string;
  /** Messages the pull consumer of the queue asks for at once. */
  maxMessages: number;
  timeoutMs: number;
  /** Printed on stdout once the relay serves. */
  readyLine: string;
}

/** JetStream's header of a message's msgID: the call's id all the way through. */
const MSG_ID_HEADER = "Nats-Msg-Id";

async function main(): Promise<void> {
  const config = JSON.parse(process.env.FLOOR_RELAY ?? "") as RelayConfig;
  const nc = await connect({ servers: config.url, name: "floor-relay" });
  const js = jetstream(nc, { timeout: config.timeoutMs });

  nc.subscribe(config.submitSubject, {
    callback: (_err, m) => {
      const msgID = m.headers?.get(config.idHeader) ?? "";
      js.publish(config.queueSubject, m.data, { msgID }).then(
        () => m.respond(),
        () => {},
      );
    },
  });

  const relay = async (m: JsMsg) => {
    try {
      const answer = await nc.request(config.callSubject, m.data, { timeout: config.timeoutMs });
      const msgID = m.headers?.get(MSG_ID_HEADER) ?? "";
      await js.publish(config.replySubject, answer.data, { msgID });
      m.ack();
    } catch {
      m.nak();
    }
  };

  const consumer = await js.consumers.get(config.queueStream, config.queueDurable);
  const messages = await consumer.consume({ max_messages: config.maxMessages });
  await nc.flush();
  const stop = async () => {
    messages.stop();
    await nc.drain().catch(() => {});
    process.exit(0);
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  console.log(config.readyLine);
  for await (const m of messages) void relay(m);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
