import { AckPolicy, DeliverPolicy, type JsMsg } from "@nats-io/jetstream";
import { decodeEventBatchBytes, type MessageEvent } from "./events.ts";
import type { Logger } from "./logger.ts";
import { Mailbox } from "./mailbox.ts";
import type { NodeContext } from "./node-context.ts";
import { STREAM } from "./subjects.ts";

export interface EventsMailboxOptions {
  /** Durable consumer on EVENTS: per node to read everything, shared to split the work. */
  durable: string;
  /** EVENTS batches handed over and not yet released, at most. */
  limit: number;
  /** Where a new consumer starts: the whole stream (journal, stats) or new events only. */
  from: "all" | "new";
  onMessage: (msg: JsMsg) => void;
  log: Logger;
  /** Key in the node's mailbox map, so the broker stops it at shutdown. */
  owner: string;
}

const ACK_WAIT_MS = 60_000;

/** Starts pulling EVENTS batches for one actor; the actor releases each batch when done. */
export function startEventsMailbox(ctx: NodeContext, opts: EventsMailboxOptions): Mailbox {
  const mailbox = new Mailbox(ctx.bus.js, ctx.bus.jsm, {
    stream: STREAM.events,
    durable: opts.durable,
    config: () => ({
      ack_policy: AckPolicy.Explicit,
      deliver_policy: opts.from === "all" ? DeliverPolicy.All : DeliverPolicy.New,
      ack_wait: ACK_WAIT_MS * 1_000_000,
      max_ack_pending: 1_000,
    }),
    onMessage: opts.onMessage,
    log: opts.log,
  });
  ctx.mailboxes.set(opts.owner, mailbox);
  mailbox.setLimit(opts.limit);
  mailbox.start();
  return mailbox;
}

/**
 * The events of one EVENTS message, or undefined when it is unreadable.
 * Only brokers publish EVENTS, so an unreadable batch is terminated and
 * kept in the stream for an operator.
 */
export function decodeEventBatch(msg: JsMsg, log: Logger): MessageEvent[] | undefined {
  const events = decodeEventBatchBytes(msg.data);
  if (events) return events;
  log.error({ seq: msg.seq }, "unreadable event batch, terminated");
  msg.term();
  return undefined;
}
