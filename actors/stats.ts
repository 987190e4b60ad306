import type { JsMsg } from "@nats-io/jetstream";
import { dispatch, type Ref, spawn } from "nact";
import { toMagistralError } from "../src/errors.ts";
import { decodeEventBatch, startEventsMailbox } from "../src/event-batches.ts";
import type { Logger } from "../src/logger.ts";
import type { Mailbox } from "../src/mailbox.ts";
import { recordActorRestart } from "../src/metrics.ts";
import type { NodeContext } from "../src/node-context.ts";
import {
  type Cell,
  cellKeyOf,
  copyCell,
  countEvent,
  emptyCell,
  mergeCell,
} from "../src/stats-rollup.ts";
import type { StatsQuery, StatsRow, StatsStore } from "../src/stats-store.ts";
import { consumerName } from "../src/subjects.ts";
import type { JournalAnswer } from "./journal.ts";

export type StatsMsg =
  | { type: "batch"; msg: JsMsg }
  | { type: "tick" }
  | { type: "flushed"; msgs: JsMsg[] }
  | { type: "flushFailed"; cells: Map<string, Cell>; msgs: JsMsg[]; maxSeq: number; err: unknown }
  | { type: "query"; query: StatsQuery; replyTo: Ref<JournalAnswer<StatsRow[]>> };

interface StatsState {
  /** Counted in memory, not yet handed to a flush. */
  cells: Map<string, Cell>;
  /** EVENTS batches counted in `cells`, acknowledged once their flush is on disk. */
  msgs: JsMsg[];
  maxSeq: number;
  flushing: boolean;
  timer?: NodeJS.Timeout;
}

/** EVENTS batches counted and not yet on disk, at most. */
const BATCHES_IN_FLIGHT = 256;
/** A flush starts when this many batches wait, or at the next tick. */
const FLUSH_BATCHES = 64;
const FLUSH_EVERY_MS = 1_000;

/**
 * Rolls EVENTS up into per-minute cells in this node's RocksDB. Events are
 * counted in memory as batches arrive; a flush every second writes them in
 * one write batch and only then acknowledges the batches it covers, so the
 * hot path costs a map update per event and one disk write per second.
 */
export function spawnStats(parent: Ref<unknown>, ctx: NodeContext, store: StatsStore) {
  const log = ctx.log.child({ component: "stats" });
  let mailbox: Mailbox | undefined;
  const stats = spawn(
    parent,
    (state: StatsState, msg: StatsMsg, actx) => {
      const env: StatsEnv = { store, log, self: actx.self, release: () => mailbox?.release() };
      switch (msg.type) {
        case "batch":
          return onBatch(env, state, msg.msg);
        case "tick":
          return startFlush(env, state);
        case "flushed":
          for (const m of msg.msgs) {
            m.ack();
            env.release();
          }
          return { ...state, flushing: false };
        case "flushFailed":
          return onFlushFailed(env, state, msg);
        case "query":
          onQuery(env, state, msg);
          return state;
      }
    },
    "stats",
    {
      initialStateFunc: (actx) => ({
        cells: new Map(),
        msgs: [],
        maxSeq: 0,
        flushing: false,
        timer: tickTimer(actx.self),
      }),
      afterStop: (state: StatsState) => clearInterval(state.timer),
      onCrash: (_msg, err, sctx) => {
        log.error({ err }, "stats actor crashed, resuming");
        recordActorRestart(ctx.nodeId, "stats");
        return sctx.resume;
      },
    },
  );
  mailbox = startEventsMailbox(ctx, {
    durable: consumerName.stats(ctx.nodeId),
    limit: BATCHES_IN_FLIGHT,
    from: "all",
    onMessage: (msg) => dispatch(stats, { type: "batch", msg }),
    log,
    owner: "stats",
  });
  return { stats, mailbox };
}

interface StatsEnv {
  store: StatsStore;
  log: Logger;
  self: Ref<StatsMsg>;
  release: () => void;
}

function onBatch(env: StatsEnv, state: StatsState, msg: JsMsg): StatsState {
  // Counted and on disk before a crash, acknowledged too late: already in the rollups.
  if (msg.seq <= env.store.streamSeq) {
    msg.ack();
    env.release();
    return state;
  }
  const events = decodeEventBatch(msg, env.log);
  if (!events) {
    env.release();
    return state;
  }
  for (const event of events) {
    const key = cellKeyOf(event);
    if (!key) continue;
    let cell = state.cells.get(key);
    if (!cell) {
      cell = emptyCell();
      state.cells.set(key, cell);
    }
    countEvent(cell, event);
  }
  state.msgs.push(msg);
  state.maxSeq = Math.max(state.maxSeq, msg.seq);
  return state.msgs.length >= FLUSH_BATCHES ? startFlush(env, state) : state;
}

function startFlush(env: StatsEnv, state: StatsState): StatsState {
  if (state.flushing || state.msgs.length === 0) return state;
  const { cells, msgs, maxSeq } = state;
  env.store.flush(cells, maxSeq).then(
    () => dispatch(env.self, { type: "flushed", msgs }),
    (err) => dispatch(env.self, { type: "flushFailed", cells, msgs, maxSeq, err }),
  );
  return { ...state, cells: new Map(), msgs: [], flushing: true };
}

/**
 * Puts the cells back, so the next flush writes them with whatever came since.
 * LIMITATION: if flushes keep failing past the consumer's 60 s ack wait, the
 * batches are delivered again and counted twice once a flush succeeds.
 */
function onFlushFailed(
  env: StatsEnv,
  state: StatsState,
  failed: Extract<StatsMsg, { type: "flushFailed" }>,
): StatsState {
  env.log.error({ err: failed.err }, "statistics not flushed, will retry");
  for (const [key, cell] of failed.cells) {
    const current = state.cells.get(key);
    if (current) mergeCell(current, cell);
    else state.cells.set(key, cell);
  }
  return {
    ...state,
    msgs: [...failed.msgs, ...state.msgs],
    maxSeq: Math.max(state.maxSeq, failed.maxSeq),
    flushing: false,
  };
}

function onQuery(env: StatsEnv, state: StatsState, msg: Extract<StatsMsg, { type: "query" }>) {
  const unflushed = new Map([...state.cells].map(([k, cell]) => [k, copyCell(cell)]));
  env.store.query(msg.query, unflushed).then(
    (rows) => dispatch(msg.replyTo, { ok: true, result: rows }),
    (err) => dispatch(msg.replyTo, { ok: false, error: toMagistralError(err).toWire() }),
  );
}

function tickTimer(self: Ref<StatsMsg>): NodeJS.Timeout {
  const timer = setInterval(() => dispatch(self, { type: "tick" }), FLUSH_EVERY_MS);
  timer.unref();
  return timer;
}
