import { AckPolicy, DeliverPolicy, type JsMsg } from "@nats-io/jetstream";
import { dispatch, type Ref, spawn } from "nact";
import { decodeValue } from "../src/envelope.ts";
import type { MessageEvent } from "../src/events.ts";
import type { JournalRecord, JournalStore } from "../src/journal-store.ts";
import { Mailbox } from "../src/mailbox.ts";
import type { NodeContext } from "../src/node-context.ts";
import { consumerName, STREAM } from "../src/subjects.ts";

export type JournalMsg =
  | { type: "batch"; msg: JsMsg }
  | { type: "stored"; msg: JsMsg }
  | { type: "storeFailed"; msg: JsMsg; err: unknown }
  | { type: "trace"; id: string; replyTo: Ref<JournalRecord[]> };

/** Event batches being written to RocksDB at once. */
const BATCHES_IN_FLIGHT = 32;

/**
 * Materializes EVENTS into this node's RocksDB journal. Each node reads the
 * whole stream through its own durable consumer, so every node can trace
 * every message; a batch is acknowledged only once it is on disk.
 */
export function spawnJournal(parent: Ref<unknown>, ctx: NodeContext, store: JournalStore) {
  const log = ctx.log.child({ component: "journal" });
  let mailbox: Mailbox | undefined;
  const journal = spawn(
    parent,
    (state: undefined, msg: JournalMsg) => {
      switch (msg.type) {
        case "batch":
          onBatch(store, msg.msg, journal, log);
          break;
        case "stored":
          msg.msg.ack();
          mailbox?.release(1);
          break;
        case "storeFailed":
          log.error({ err: msg.err }, "journal batch not stored, will be redelivered");
          msg.msg.nak(1_000);
          mailbox?.release(1);
          break;
        case "trace":
          store.trace(msg.id).then(
            (records) => dispatch(msg.replyTo, records),
            () => dispatch(msg.replyTo, []),
          );
          break;
      }
      return state;
    },
    "journal",
    {
      onCrash: (_msg, err, sctx) => {
        log.error({ err }, "journal actor crashed, resuming");
        return sctx.resume;
      },
    },
  );

  mailbox = new Mailbox(ctx.bus.js, ctx.bus.jsm, {
    stream: STREAM.events,
    durable: consumerName.journal(ctx.nodeId),
    config: () => ({
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: 60_000_000_000,
      max_ack_pending: 1_000,
    }),
    onMessage: (msg) => dispatch(journal, { type: "batch", msg }),
    log,
  });
  ctx.mailboxes.set("journal", mailbox);
  mailbox.release(BATCHES_IN_FLIGHT);
  mailbox.start();
  return { journal, mailbox };
}

function onBatch(store: JournalStore, msg: JsMsg, self: Ref<JournalMsg>, log: NodeContext["log"]) {
  let events: MessageEvent[];
  try {
    events = decodeValue(msg.data) as MessageEvent[];
    if (!Array.isArray(events)) throw new TypeError("event batch is not an array");
  } catch (err) {
    // Only brokers publish EVENTS; an unreadable batch is kept in the stream for an operator.
    log.error({ err, seq: msg.seq }, "unreadable event batch, terminated");
    msg.term();
    dispatch(self, { type: "stored", msg });
    return;
  }
  store.append(events).then(
    () => dispatch(self, { type: "stored", msg }),
    (err) => dispatch(self, { type: "storeFailed", msg, err }),
  );
}
