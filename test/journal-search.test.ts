import test, { type ExecutionContext } from "ava";
import { RequestFailedError } from "../src/client.ts";
import type { MessageEvent } from "../src/events.ts";
import type { JournalPage } from "../src/journal-search.ts";
import type { JournalRecord } from "../src/journal-store.ts";
import type { ServiceDef } from "../src/registry.ts";
import { runAdminCli } from "./helpers/admin-cli.ts";
import { waitFor } from "./helpers/bus.ts";
import { journaled } from "./helpers/journal.ts";
import { type ObservedBus, startObservedBus } from "./helpers/observed-bus.ts";

/** mfc calls echo (fns) five times, mvd calls pension (pfr) three times and one unknown service. */
async function twoServices(t: ExecutionContext): Promise<ObservedBus> {
  const bus = await startObservedBus(t);
  const fns = await bus.addAgency("fns", ["provider"]);
  const pfr = await bus.addAgency("pfr", ["provider"]);
  const mfc = await bus.addAgency("mfc", ["consumer"]);
  const mvd = await bus.addAgency("mvd", ["consumer"]);
  await bus.addService({ id: "echo", owner: "fns" });
  await bus.addService({ id: "pension", owner: "pfr" });
  fns.provide("echo", (req) => req.payload);
  pfr.provide("pension", () => "<Pension/>");
  const calls = [
    ...Array.from({ length: 5 }, (_, i) => mfc.request("echo", `e${i}`)),
    ...Array.from({ length: 3 }, (_, i) => mvd.request("pension", `p${i}`)),
  ];
  await Promise.all(calls);
  await t.throwsAsync(mvd.submit("nope", "x"), { instanceOf: RequestFailedError });
  await bus.settled();
  return bus;
}

function search(bus: ObservedBus, query: Record<string, unknown>) {
  return bus.admin.call<JournalPage>("journal.search", query);
}

function countByType(records: JournalRecord[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const { event } of records) counts[event.type] = (counts[event.type] ?? 0) + 1;
  return counts;
}

test("the journal is searched by service, agency, outcome and time", async (t) => {
  const bus = await twoServices(t);

  const echo = await search(bus, { service: "echo" });
  t.true(echo.records.every((r) => r.event.service === "echo"));
  t.deepEqual(countByType(echo.records), {
    changed: 1,
    accepted: 5,
    attempt: 5,
    delivered: 5,
    responded: 5,
  });

  const mvdAccepted = await search(bus, { agency: "mvd", outcome: "accepted" });
  t.is(mvdAccepted.records.length, 3);
  t.true(mvdAccepted.records.every((r) => r.event.service === "pension"));

  const rejected = await search(bus, { outcome: "rejected" });
  t.is(rejected.records.length, 1);
  t.like(rejected.records[0]!.event, { agency: "mvd", code: "UNKNOWN_SERVICE" });

  const asProvider = await search(bus, { agency: "fns", outcome: "responded" });
  t.is(asProvider.records.length, 5, "an agency finds the messages it served too");

  const accepted = (await search(bus, { service: "echo", outcome: "accepted" })).records;
  const middleMs = accepted[2]!.event.at;
  const later = await search(bus, { service: "echo", outcome: "accepted", fromMs: middleMs });
  const earlier = await search(bus, { service: "echo", outcome: "accepted", toMs: middleMs });
  t.true(later.records.every((r) => r.event.at >= middleMs));
  t.true(earlier.records.every((r) => r.event.at <= middleMs));
  t.is(new Set([...later.records, ...earlier.records].map((r) => r.seq)).size, 5);
});

test("a search is paged with a cursor, oldest or newest first", async (t) => {
  const bus = await twoServices(t);
  const all = (await search(bus, { service: "echo" })).records;

  const paged: JournalRecord[] = [];
  let cursor: string | undefined;
  do {
    const page = await search(bus, { service: "echo", limit: 4, cursor });
    t.true(page.records.length <= 4);
    paged.push(...page.records);
    cursor = page.cursor;
  } while (cursor);
  t.deepEqual(
    paged.map((r) => r.seq),
    all.map((r) => r.seq),
  );

  const newest = await search(bus, { service: "echo", newestFirst: true, limit: 3 });
  const times = newest.records.map((r) => r.event.at);
  t.deepEqual(
    times,
    [...times].sort((a, b) => b - a),
  );
  t.is(newest.records[0]!.seq, Math.max(...all.map((r) => r.seq)));
  t.truthy(newest.cursor);

  const bad = await t.throwsAsync(search(bus, { outcome: "lost" }));
  t.is((bad as RequestFailedError).code, "BAD_REQUEST");

  const cli = await runAdminCli([
    "--server",
    bus.server.url,
    "--json",
    "journal",
    "search",
    "--service",
    "echo",
    "--outcome",
    "accepted",
  ]);
  t.is(cli.code, 0, cli.stderr);
  t.is((JSON.parse(cli.stdout) as JournalPage).records.length, 5);
});

test("registry changes are journaled with who, before and after", async (t) => {
  const bus = await startObservedBus(t);
  await bus.addAgency("fns", ["provider"]);
  await bus.addService({ id: "echo", owner: "fns" });
  await bus.admin.call("service.put", {
    service: { id: "echo", owner: "fns", description: "echoes", status: "suspended" },
  });
  await waitFor(() => bus.broker.view.get("echo")?.status === "suspended");
  await bus.settled();

  const changes = (await search(bus, { outcome: "changed", service: "echo" })).records;
  t.is(changes.length, 2);
  const [created, updated] = changes.map((r) => r.event) as [MessageEvent, MessageEvent];
  t.like(created, { entity: "service", key: "echo", agency: "fns", who: "operator" });
  t.is(created.before, undefined);
  t.like(updated.before as ServiceDef, { description: "", status: "active" });
  t.like(updated.after as ServiceDef, { description: "echoes", status: "suspended" });

  const agency = (await search(bus, { outcome: "changed", agency: "fns" })).records;
  t.true(agency.some((r) => r.event.entity === "agency" && r.event.key === "fns"));
});

test("the payload is journaled only as the service's retention allows", async (t) => {
  const bus = await startObservedBus(t);
  const fns = await bus.addAgency("fns", ["provider"]);
  const mfc = await bus.addAgency("mfc", ["consumer"]);
  for (const retention of ["full", "metadata", "none"] as const) {
    await bus.addService({ id: `svc-${retention}`, owner: "fns", journalRetention: retention });
    fns.provide(`svc-${retention}`, () => "ok");
  }
  const accepted = async (service: string) => {
    const answer = await mfc.request(service, "<Person>Ivanov</Person>", {
      headers: { "x-case": "42" },
    });
    const records = await journaled(bus.broker, answer.correlationId!, "accepted");
    return records.find((r) => r.event.type === "accepted")!.event;
  };

  const full = await accepted("svc-full");
  t.is(Buffer.from(full.payload!).toString(), "<Person>Ivanov</Person>");
  t.like(full, { contentType: "application/xml", headers: { "x-case": "42" } });

  const metadata = await accepted("svc-metadata");
  t.is(metadata.payload, undefined);
  t.like(metadata, { contentType: "application/xml", headers: { "x-case": "42" }, bytes: 23 });

  const none = await accepted("svc-none");
  t.is(none.payload, undefined);
  t.is(none.headers, undefined);
  t.is(none.contentType, undefined);
  t.is(none.bytes, 23);

  const refused = await t.throwsAsync(
    bus.admin.call("service.put", { service: { id: "x", owner: "fns", journalRetention: "all" } }),
  );
  t.is((refused as RequestFailedError).code, "BAD_REQUEST");
});
