import path from "node:path";
import test from "ava";
import type { MessageEvent } from "../src/events.ts";
import type { QueueDepth } from "../src/queue-depth.ts";
import { type Cell, cellKeyOf, countEvent, emptyCell, MINUTE_MS } from "../src/stats-rollup.ts";
import { type StatsRow, StatsStore } from "../src/stats-store.ts";
import { runAdminCli } from "./helpers/admin-cli.ts";
import { waitFor } from "./helpers/bus.ts";
import { tempDir } from "./helpers/nats.ts";
import { startObservedBus } from "./helpers/observed-bus.ts";

const HOUR_MS = 3_600_000;
const BASE_MS = Date.UTC(2026, 0, 15, 10, 0, 0);

function event(type: MessageEvent["type"], at: number, extra: Partial<MessageEvent> = {}) {
  return { type, id: `m${at}`, at, node: "n1", ...extra } as MessageEvent;
}

function rollup(events: MessageEvent[]): Map<string, Cell> {
  const cells = new Map<string, Cell>();
  for (const e of events) {
    const key = cellKeyOf(e)!;
    const cell = cells.get(key) ?? emptyCell();
    countEvent(cell, e);
    cells.set(key, cell);
  }
  return cells;
}

/** The value hdr-histogram reports at `p` for exact values: the nearest-rank percentile. */
function nearestRank(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.floor((p / 100) * sorted.length + 0.5));
  return sorted[rank - 1]!;
}

test("rollups give the counts and percentiles of what was counted, by range and group", async (t) => {
  const store = await StatsStore.open(path.join(tempDir(t), "stats"));
  t.teardown(() => store.close());
  const ab = { service: "a", agency: "c1", provider: "p1" };
  const delivered = Array.from({ length: 100 }, (_, i) =>
    event("delivered", BASE_MS + i * 1_000, { ...ab, latencyMs: i + 1 }),
  );
  const accepted = Array.from({ length: 100 }, (_, i) =>
    event("accepted", BASE_MS + i * 1_000, { ...ab, bytes: 10 }),
  );
  const otherHour = [
    event("accepted", BASE_MS + HOUR_MS, { service: "b", agency: "c2", provider: "p1", bytes: 5 }),
    event("rejected", BASE_MS + HOUR_MS, { service: "b", agency: "c2", code: "SCHEMA_INVALID" }),
  ];
  // Two flushes touching the same cells: the second adds to the first.
  await store.flush(rollup(delivered.slice(0, 40)), 1);
  await store.flush(rollup([...delivered.slice(40), ...accepted]), 2);
  const unflushed = rollup(otherHour);
  const range = { fromMs: BASE_MS, toMs: BASE_MS + 2 * HOUR_MS };

  const [total] = await store.query({ ...range, granularity: "all", service: "a" }, unflushed);
  t.like(total, { counts: { delivered: 100, accepted: 100 }, requestBytes: 1_000 });
  t.like(total!.callMs, { count: 100, p50Ms: 50, p95Ms: 95, p99Ms: 99, maxMs: 100 });

  const byHour = await store.query({ ...range, granularity: "hour" }, unflushed);
  t.deepEqual(
    byHour.map((r) => [r.fromMs, r.counts]),
    [
      [BASE_MS, { delivered: 100, accepted: 100 }],
      [BASE_MS + HOUR_MS, { accepted: 1, rejected: 1 }],
    ],
  );
  t.deepEqual(byHour[1]!.codes, { SCHEMA_INVALID: 1 });

  const byMinute = await store.query({ ...range, granularity: "minute", outcome: "delivered" });
  t.deepEqual(
    byMinute.map((r) => [(r.fromMs - BASE_MS) / MINUTE_MS, r.counts.delivered]),
    [
      [0, 60],
      [1, 40],
    ],
  );
  t.is(byMinute[1]!.callMs!.p50Ms, nearestRank(range61to100(), 50));

  const byConsumer = await store.query(
    { ...range, granularity: "all", groupBy: "consumer" },
    unflushed,
  );
  t.deepEqual(
    byConsumer.map((r) => [r.group, r.counts.accepted]),
    [
      ["c1", 100],
      ["c2", 1],
    ],
  );
  t.is(store.streamSeq, 2);
});

function range61to100() {
  return Array.from({ length: 40 }, (_, i) => i + 61);
}

test("stats.query counts what crossed the bus, with the provider-call percentiles the journal saw", async (t) => {
  const bus = await startObservedBus(t);
  const fns = await bus.addAgency("fns", ["provider"]);
  const mfc = await bus.addAgency("mfc", ["consumer"]);
  const mvd = await bus.addAgency("mvd", ["consumer"]);
  await bus.addService({ id: "echo", owner: "fns", maxPayloadBytes: 100 });
  const delaysMs = [2, 5, 10, 20, 40];
  fns.provide("echo", async (req) => {
    const i = Number(new TextDecoder().decode(req.payload));
    await new Promise((r) => setTimeout(r, delaysMs[i % delaysMs.length]));
    return "ok";
  });
  const fromMs = Date.now() - MINUTE_MS;
  await Promise.all([
    ...Array.from({ length: 20 }, (_, i) => mfc.request("echo", String(i))),
    ...Array.from({ length: 6 }, (_, i) => mvd.request("echo", String(i))),
  ]);
  await t.throwsAsync(mvd.submit("echo", "x".repeat(200)));
  await bus.settled();

  const query = { fromMs, toMs: Date.now() + MINUTE_MS, granularity: "all" };
  const byConsumer = await bus.admin.call<StatsRow[]>("stats.query", {
    ...query,
    groupBy: "consumer",
  });
  t.like(
    byConsumer.find((r) => r.group === "mfc"),
    { counts: { accepted: 20, responded: 20 } },
  );
  t.like(
    byConsumer.find((r) => r.group === "mvd"),
    {
      counts: { accepted: 6, responded: 6, rejected: 1 },
      codes: { PAYLOAD_TOO_LARGE: 1 },
    },
  );

  const journaled = await bus.admin.call<{ records: { event: MessageEvent }[] }>("journal.search", {
    service: "echo",
    outcome: "delivered",
  });
  const callMs = journaled.records.map((r) => Math.max(1, r.event.latencyMs!));
  const [echo] = await bus.admin.call<StatsRow[]>("stats.query", { ...query, service: "echo" });
  t.is(echo!.callMs!.count, 26);
  for (const p of [50, 95, 99] as const) {
    t.is(echo!.callMs![`p${p}Ms`], nearestRank(callMs, p), `p${p}`);
  }
  t.is(echo!.e2eMs!.count, 26);

  const cli = await runAdminCli(["--server", bus.server.url, "--json", "stats", "--by", "service"]);
  t.is(cli.code, 0, cli.stderr);
  const rows = JSON.parse(cli.stdout) as StatsRow[];
  t.is(
    rows.filter((r) => r.group === "echo").reduce((n, r) => n + (r.counts.responded ?? 0), 0),
    26,
  );
});

test("queue depth and the oldest waiting request per service", async (t) => {
  const bus = await startObservedBus(t);
  const fns = await bus.addAgency("fns", ["provider"]);
  const mfc = await bus.addAgency("mfc", ["consumer"]);
  await bus.addService({ id: "slow", owner: "fns", concurrency: 1 });
  let release!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  t.teardown(() => release());
  fns.provide("slow", async () => {
    await gate;
    return "done";
  });
  const firstAt = Date.now();
  for (let i = 0; i < 5; i++) await mfc.submit("slow", `r${i}`);

  let depth: QueueDepth | undefined;
  await waitFor(async () => {
    const depths = await bus.admin.call<QueueDepth[]>("stats.queues");
    depth = depths.find((d) => d.service === "slow");
    return depth?.inFlight === 1 && depth.pending === 4;
  });
  t.true(depth!.oldestAt! >= firstAt - 1_000 && depth!.oldestAt! <= Date.now());
  t.true(depth!.oldestAgeMs! >= 0);
  release();
  await waitFor(async () => {
    const depths = await bus.admin.call<QueueDepth[]>("stats.queues");
    const slow = depths.find((d) => d.service === "slow");
    return slow?.pending === 0 && slow.inFlight === 0 && slow.oldestAt === undefined;
  });
  t.pass();
});

test("a cell with few latencies keeps them as they are, and past a few holds a histogram", async (t) => {
  const store = await StatsStore.open(path.join(tempDir(t), "stats"));
  t.teardown(() => store.close());
  const ab = { service: "a", agency: "c1", provider: "p1" };
  const delivered = (from: number, count: number) =>
    Array.from({ length: count }, (_, i) =>
      event("delivered", BASE_MS + from + i, { ...ab, latencyMs: from + i + 1 }),
    );
  const few = rollup(delivered(0, 3));
  t.deepEqual([...few.values()][0]!.values, [1, 2, 3]);
  t.is([...few.values()][0]!.latency, undefined);

  await store.flush(few, 1);
  await store.flush(rollup(delivered(3, 2)), 2);
  const range = { fromMs: BASE_MS, toMs: BASE_MS + MINUTE_MS, granularity: "all" as const };
  const [small] = await store.query(range);
  t.like(small!.callMs, { count: 5, p50Ms: 3, maxMs: 5 });

  await store.flush(rollup(delivered(5, 95)), 3);
  const [large] = await store.query(range);
  t.like(large!.callMs, { count: 100, p50Ms: 50, p99Ms: 99, maxMs: 100 });
});

test("a latency over an hour counts as an hour, also into a histogram read back from disk", async (t) => {
  const store = await StatsStore.open(path.join(tempDir(t), "stats"));
  t.teardown(() => store.close());
  const ab = { service: "a", agency: "c1", provider: "p1" };
  const many = Array.from({ length: 40 }, (_, i) =>
    event("delivered", BASE_MS + i, { ...ab, latencyMs: 10 }),
  );
  await store.flush(rollup(many), 1);
  const late = event("delivered", BASE_MS + 50, { ...ab, latencyMs: 5 * HOUR_MS });
  await store.flush(rollup([late]), 2);
  await store.flush(rollup([event("delivered", BASE_MS + 51, { ...ab, latencyMs: 20 })]), 3);

  const [row] = await store.query({
    fromMs: BASE_MS,
    toMs: BASE_MS + MINUTE_MS,
    granularity: "all",
  });
  t.is(row!.callMs?.count, 42, "the flushes after the long one were kept");
  t.true(Math.abs(row!.callMs!.maxMs - HOUR_MS) <= HOUR_MS * 0.01, "its latency reads as an hour");
});
