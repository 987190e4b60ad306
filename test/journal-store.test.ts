// The journal store's posting-list indexes against a real RocksDB: one key
// per index value per write batch, exact time ranges, archiving.
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import type { MessageEvent } from "../src/events.ts";
import { archiveDirOf, archiveJournal } from "../src/journal-archive.ts";
import { searchJournal } from "../src/journal-search.ts";
import { JournalStore, POSTING_SPAN_MS } from "../src/journal-store.ts";
import { tempDir } from "./helpers/nats.ts";

async function openStore(t: ExecutionContext): Promise<{ store: JournalStore; dataDir: string }> {
  const dataDir = tempDir(t);
  const store = await JournalStore.open(path.join(dataDir, "journal", "n1"));
  t.teardown(() => store.close());
  return { store, dataDir };
}

function event(id: string, at: number, extra: Partial<MessageEvent> = {}): MessageEvent {
  return { type: "accepted", id, at, node: "n1", service: "echo", agency: "mfc", ...extra };
}

async function keysUnder(store: JournalStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const key of store.db.keys({ gte: prefix, lt: `${prefix}~` })) keys.push(key);
  return keys;
}

test("a write batch makes one index key per service, not one per record", async (t) => {
  const { store } = await openStore(t);
  const at = Date.now();
  await store.append(Array.from({ length: 50 }, (_, i) => event(`a${i}`, at + i)));
  await store.append([event("b0", at + 100), event("b1", at + 101, { service: "other" })]);

  t.is((await keysUnder(store, "s!echo!")).length, 2, "one list per batch that had echo");
  t.is((await keysUnder(store, "s!other!")).length, 1);
  const page = await searchJournal(store, { service: "echo" });
  t.deepEqual(
    page.records.map((r) => r.event.id),
    [...Array.from({ length: 50 }, (_, i) => `a${i}`), "b0"],
  );
});

test("a time range is exact although a posting list starts before it", async (t) => {
  const { store } = await openStore(t);
  const at = Date.now() - 3_600_000;
  const times = [at, at + 10_000, at + 20_000, at + 30_000];
  await store.append(times.map((ms, i) => event(`m${i}`, ms)));

  const later = await searchJournal(store, { service: "echo", fromMs: at + 15_000 });
  t.deepEqual(
    later.records.map((r) => r.event.id),
    ["m2", "m3"],
  );
  const window = await searchJournal(store, { fromMs: at + 5_000, toMs: at + 25_000 });
  t.deepEqual(
    window.records.map((r) => r.event.id),
    ["m1", "m2"],
  );
});

test("events further apart than a list's span go to separate lists", async (t) => {
  const { store } = await openStore(t);
  const at = Date.now() - 3_600_000;
  await store.append([event("m0", at), event("m1", at + POSTING_SPAN_MS + 1)]);
  t.is((await keysUnder(store, "s!echo!")).length, 2);
  const page = await searchJournal(store, { service: "echo", fromMs: at + POSTING_SPAN_MS });
  t.deepEqual(
    page.records.map((r) => r.event.id),
    ["m1"],
  );
});

test("pages follow each other inside one posting list, both ways", async (t) => {
  const { store } = await openStore(t);
  const at = Date.now();
  await store.append(Array.from({ length: 10 }, (_, i) => event(`m${i}`, at + i)));
  for (const newestFirst of [false, true]) {
    const ids: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await searchJournal(store, { service: "echo", limit: 3, cursor, newestFirst });
      t.true(page.records.length <= 3);
      ids.push(...page.records.map((r) => r.event.id));
      cursor = page.cursor;
    } while (cursor);
    const all = Array.from({ length: 10 }, (_, i) => `m${i}`);
    t.deepEqual(ids, newestFirst ? all.reverse() : all);
  }
});

test("archiving removes a batch's posting lists once all its records are archived", async (t) => {
  const { store, dataDir } = await openStore(t);
  const oldMs = Date.now() - 7_200_000;
  await store.append(Array.from({ length: 10 }, (_, i) => event(`old${i}`, oldMs + i)));
  await store.append([event("straddle0", oldMs + 20), event("straddle1", Date.now())]);
  await store.append([event("new0", Date.now())]);

  const archived = await archiveJournal(store, archiveDirOf(dataDir, "n1"), {
    olderThanMs: 3_600_000,
  });
  t.is(archived, 11);
  // The straddling batch's two lists (its times are hours apart) stay, with the newest batch's.
  t.is((await keysUnder(store, "s!echo!")).length, 3);
  t.is((await keysUnder(store, "b!")).length, 2);
  const page = await searchJournal(store, { service: "echo" });
  t.deepEqual(
    page.records.map((r) => r.event.id),
    ["straddle1", "new0"],
  );
});
