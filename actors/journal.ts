import type { JsMsg } from "@nats-io/jetstream";
import { dispatch, type Ref, spawn } from "nact";
import { toMagistralError, type WireError } from "../src/errors.ts";
import { startEventsMailbox } from "../src/event-batches.ts";
import type { JournalPage, JournalQuery } from "../src/journal-search.ts";
import type { JournalRecord } from "../src/journal-store.ts";
import type { JournalThread } from "../src/journal-thread.ts";
import type { Logger } from "../src/logger.ts";
import type { Mailbox } from "../src/mailbox.ts";
import { recordActorRestart } from "../src/metrics.ts";
import type { NodeContext } from "../src/node-context.ts";
import { consumerName } from "../src/subjects.ts";

/** An answer of the journal actor to a query that can fail. */
export type JournalAnswer<T> = { ok: true; result: T } | { ok: false; error: WireError };

export type JournalMsg =
  | { type: "batch"; msg: JsMsg }
  /** Written; `count` is -1 for a batch that could not be read. */
  | { type: "stored"; msg: JsMsg; count: number }
  | { type: "storeFailed"; msg: JsMsg; err: unknown }
  | { type: "trace"; id: string; replyTo: Ref<JournalRecord[]> }
  | { type: "search"; query: JournalQuery; replyTo: Ref<JournalAnswer<JournalPage>> }
  /** Archive records past the retention age now; from the timer or an operator. */
  | { type: "archive"; replyTo?: Ref<JournalAnswer<number>> }
  | { type: "archived"; count: number; replyTo?: Ref<JournalAnswer<number>> }
  | { type: "archiveFailed"; err: unknown; replyTo?: Ref<JournalAnswer<number>> };

export interface JournalOptions {
  /** Where this node's archive files go. */
  archiveDir: string;
  /** Records older than this are archived and removed from RocksDB; undefined keeps all. */
  archiveAfterMs?: number;
  /** How often to look for records to archive. Default one hour. */
  archiveEveryMs?: number;
}

interface JournalState {
  archiving: boolean;
  timer?: NodeJS.Timeout;
}

/** Event batches being written to RocksDB at once. */
const BATCHES_IN_FLIGHT = 32;
const DEFAULT_ARCHIVE_EVERY_MS = 3_600_000;

/**
 * Materializes EVENTS into this node's RocksDB journal. Each node reads the
 * whole stream through its own durable consumer, so every node can trace
 * and search every message; a batch is acknowledged only once it is on
 * disk. Reads and archiving run as promises that report back as messages.
 */
export function spawnJournal(
  parent: Ref<unknown>,
  ctx: NodeContext,
  store: JournalThread,
  opts: JournalOptions,
) {
  const log = ctx.log.child({ component: "journal" });
  let mailbox: Mailbox | undefined;
  const journal = spawn(
    parent,
    (state: JournalState, msg: JournalMsg, actx) => {
      const env = { store, log, self: actx.self, opts };
      switch (msg.type) {
        case "batch":
          onBatch(env, msg.msg);
          return state;
        case "stored":
          if (msg.count < 0) {
            // Only brokers publish EVENTS: an unreadable batch is kept for an operator.
            log.error({ seq: msg.msg.seq }, "unreadable event batch, terminated");
            msg.msg.term();
          } else msg.msg.ack();
          mailbox?.release();
          return state;
        case "storeFailed":
          log.error({ err: msg.err, seq: msg.msg.seq }, "journal batch not stored, redelivered");
          msg.msg.nak(1_000);
          mailbox?.release();
          return state;
        case "trace":
          store.trace(msg.id).then(
            (records) => dispatch(msg.replyTo, records),
            () => dispatch(msg.replyTo, []),
          );
          return state;
        case "search":
          answer(store.search(msg.query), msg.replyTo);
          return state;
        default:
          return onArchiveMsg(env, state, msg);
      }
    },
    "journal",
    {
      initialStateFunc: (actx) => ({ archiving: false, timer: archiveTimer(actx.self, opts) }),
      afterStop: (state: JournalState) => clearInterval(state.timer),
      onCrash: (_msg, err, sctx) => {
        log.error({ err }, "journal actor crashed, resuming");
        recordActorRestart(ctx.nodeId, "journal");
        return sctx.resume;
      },
    },
  );

  mailbox = startEventsMailbox(ctx, {
    durable: consumerName.journal(ctx.nodeId),
    limit: BATCHES_IN_FLIGHT,
    from: "all",
    onMessage: (msg) => dispatch(journal, { type: "batch", msg }),
    log,
    owner: "journal",
  });
  return { journal, mailbox };
}

interface JournalEnv {
  store: JournalThread;
  log: Logger;
  self: Ref<JournalMsg>;
  opts: JournalOptions;
}

function onBatch({ store, self }: JournalEnv, msg: JsMsg): void {
  store.append(msg.data, msg.seq).then(
    (count) => dispatch(self, { type: "stored", msg, count }),
    (err) => dispatch(self, { type: "storeFailed", msg, err }),
  );
}

function onArchiveMsg(
  env: JournalEnv,
  state: JournalState,
  msg: Extract<JournalMsg, { type: "archive" | "archived" | "archiveFailed" }>,
): JournalState {
  switch (msg.type) {
    case "archive":
      return startArchive(env, state, msg.replyTo);
    case "archived":
      if (msg.count > 0) env.log.info({ records: msg.count }, "journal records archived");
      if (msg.replyTo) dispatch(msg.replyTo, { ok: true, result: msg.count });
      return { ...state, archiving: false };
    case "archiveFailed":
      env.log.error({ err: msg.err }, "journal archiving failed");
      if (msg.replyTo) {
        dispatch(msg.replyTo, { ok: false, error: toMagistralError(msg.err).toWire() });
      }
      return { ...state, archiving: false };
  }
}

function startArchive(
  { store, self, opts }: JournalEnv,
  state: JournalState,
  replyTo?: Ref<JournalAnswer<number>>,
): JournalState {
  // One run at a time; the timer's next tick picks up whatever this one left.
  if (state.archiving || opts.archiveAfterMs === undefined) {
    if (replyTo) dispatch(replyTo, { ok: true, result: 0 });
    return state;
  }
  store.archive(opts.archiveDir, opts.archiveAfterMs).then(
    (count) => dispatch(self, { type: "archived", count, replyTo }),
    (err) => dispatch(self, { type: "archiveFailed", err, replyTo }),
  );
  return { ...state, archiving: true };
}

function archiveTimer(self: Ref<JournalMsg>, opts: JournalOptions): NodeJS.Timeout | undefined {
  if (opts.archiveAfterMs === undefined) return undefined;
  const timer = setInterval(
    () => dispatch(self, { type: "archive" }),
    opts.archiveEveryMs ?? DEFAULT_ARCHIVE_EVERY_MS,
  );
  timer.unref();
  return timer;
}

function answer<T>(work: Promise<T>, replyTo: Ref<JournalAnswer<T>>): void {
  work.then(
    (result) => dispatch(replyTo, { ok: true, result }),
    (err) => dispatch(replyTo, { ok: false, error: toMagistralError(err).toWire() }),
  );
}
