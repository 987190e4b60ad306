import { readdirSync, rmSync } from "node:fs";
import path from "node:path";
import rocks from "@nxtedition/rocksdb";
import test, { type ExecutionContext } from "ava";
import { decodeValue, encodeValue } from "../src/envelope.ts";
import type { MessageEvent } from "../src/events.ts";
import { archiveDirOf, archiveJournal } from "../src/journal-archive.ts";
import {
  decodeStored,
  JournalStore,
  KEY,
  recordHash,
  type StoredRecord,
} from "../src/journal-store.ts";
import { verifyDataDir } from "../src/journal-verify.ts";
import { runAdminCli } from "./helpers/admin-cli.ts";
import { tempDir } from "./helpers/nats.ts";
import { type ObservedBus, startObservedBus } from "./helpers/observed-bus.ts";

/** Sets up fns serving `echo` to mfc; returns a function that sends requests and waits for them. */
async function echoBus(t: ExecutionContext, bus: ObservedBus) {
  const provider = await bus.addAgency("fns", ["provider"]);
  const consumer = await bus.addAgency("mfc", ["consumer"]);
  await bus.addService({ id: "echo", owner: "fns" });
  provider.provide("echo", (req) => req.payload);
  return async (count: number) => {
    const answers = await Promise.all(
      Array.from({ length: count }, (_, i) => consumer.request("echo", `m${i}`)),
    );
    t.is(answers.length, count);
    await bus.settled();
    return answers.map((a) => a.correlationId!);
  };
}

async function echoTraffic(t: ExecutionContext, bus: ObservedBus, count: number) {
  return (await echoBus(t, bus))(count);
}

/** Rewrites one stored record through `change`, as someone with disk access could. */
async function editRecord(dir: string, seq: number, change: (r: StoredRecord) => StoredRecord) {
  const db = new rocks.RocksLevel(dir, { keyEncoding: "utf8", valueEncoding: "view" });
  await db.open();
  const stored = decodeStored(await db.get(KEY.record(seq)));
  await db.put(KEY.record(seq), encodeValue(change(stored)));
  await db.close();
}

function forge(stored: StoredRecord): StoredRecord {
  const event = decodeValue(stored.e) as MessageEvent;
  return { ...stored, e: encodeValue({ ...event, agency: "forged" }) };
}

test("journal verify passes an intact journal and reports the record edited in RocksDB", async (t) => {
  const bus = await startObservedBus(t);
  await echoTraffic(t, bus, 3);
  await bus.broker.close();

  const intact = await runAdminCli(["journal", "verify", "--data-dir", bus.dir]);
  t.is(intact.code, 0, intact.stderr);
  const [, records] = /^journal verify: (\d+) records, 0 breaks$/.exec(intact.lastLine) ?? [];
  t.true(Number(records) >= 12, intact.stdout);

  await editRecord(path.join(bus.dir, "journal", bus.broker.nodeId), 5, forge);

  const broken = await runAdminCli(["journal", "verify", "--data-dir", bus.dir]);
  t.is(broken.code, 2);
  t.regex(broken.stdout, /first break: record 5 in journal: record altered/);
  t.is(broken.lastLine, `journal verify: ${records} records, 1 breaks`);
});

test("a record edited with its hash recomputed breaks the link of the next one", async (t) => {
  const bus = await startObservedBus(t);
  await echoTraffic(t, bus, 2);
  await bus.broker.close();

  await editRecord(path.join(bus.dir, "journal", bus.broker.nodeId), 3, (stored) => {
    const forged = forge(stored);
    return { ...forged, hash: recordHash(forged.prev, forged.e) };
  });

  const [report] = await verifyDataDir(bus.dir);
  t.is(report!.breaks.length, 1);
  t.like(report!.breaks[0], { seq: 4, where: "journal" });
});

test("archived records move to gzip files that keep the chain, and verify walks across them", async (t) => {
  const bus = await startObservedBus(t, { journalArchiveAfterMs: 1 });
  const traffic = await echoBus(t, bus);
  const ids = await traffic(4);
  t.true((await bus.broker.trace(ids[0]!)).length > 0);

  const archived = await bus.admin.call<number>("journal.archive");

  t.true(archived >= 16, `archived ${archived}`);
  t.deepEqual(await bus.broker.trace(ids[0]!), [], "archived records leave RocksDB");
  const files = readdirSync(archiveDirOf(bus.dir, bus.broker.nodeId));
  t.true(files.length >= 1 && files.every((f) => f.endsWith(".mgj.gz")));

  await traffic(1);
  await bus.broker.close();
  const [report] = await verifyDataDir(bus.dir);
  t.deepEqual(report!.breaks, []);
  t.true(report!.records > archived, "the chain runs on from the archive into RocksDB");
});

test("a missing archive file is a break", async (t) => {
  const dataDir = tempDir(t);
  const store = await JournalStore.open(path.join(dataDir, "journal", "n1"));
  const oldMs = Date.now() - 7_200_000;
  const event = (i: number, at: number): MessageEvent => ({
    type: "accepted",
    id: `m${i}`,
    at,
    node: "n1",
    service: "echo",
    agency: "mfc",
  });
  await store.append(Array.from({ length: 30 }, (_, i) => event(i, oldMs + i)));
  await store.append([event(30, Date.now())]);
  const dir = archiveDirOf(dataDir, "n1");

  t.is(await archiveJournal(store, dir, { olderThanMs: 3_600_000, maxRecordsPerFile: 12 }), 30);
  t.is(store.firstSeq, 31);
  await store.append([event(31, Date.now())]);
  await store.close();
  const [intact] = await verifyDataDir(dataDir);
  t.like(intact, { records: 32, breaks: [] });

  const files = readdirSync(dir).sort();
  t.is(files.length, 3);
  rmSync(path.join(dir, files[1]!));
  const [broken] = await verifyDataDir(dataDir);
  t.true(broken!.breaks.length > 0);
  t.like(broken!.breaks[0], { seq: 25, where: files[2] });
});

test("a journal rebuilt from EVENTS equals the original", async (t) => {
  const bus = await startObservedBus(t);
  await echoTraffic(t, bus, 5);
  await bus.broker.close();
  const rebuilt = path.join(tempDir(t), "rebuilt");

  const run = await runAdminCli([
    "--server",
    bus.server.url,
    "journal",
    "rebuild",
    "--into",
    rebuilt,
  ]);

  t.is(run.code, 0, run.stderr);
  t.regex(run.lastLine, /^rebuilt \d+ records from \d+ event batches$/);
  const original = await dump(path.join(bus.dir, "journal", bus.broker.nodeId));
  t.true(original.size > 20);
  t.deepEqual(await dump(rebuilt), original);
});

/** Every key and value of a RocksDB journal. */
async function dump(dir: string): Promise<Map<string, string>> {
  const db = new rocks.RocksLevel(dir, { keyEncoding: "utf8", valueEncoding: "view" });
  await db.open();
  const out = new Map<string, string>();
  for await (const [key, value] of db.iterator()) out.set(key, Buffer.from(value).toString("hex"));
  await db.close();
  return out;
}
