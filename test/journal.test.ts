import path from "node:path";
import test, { type ExecutionContext } from "ava";
import { BrokerNode } from "../src/broker.ts";
import { JournalStore } from "../src/journal-store.ts";
import { rootLogger } from "../src/logger.ts";
import { startBus, type TestBus, waitFor } from "./helpers/bus.ts";
import { journaled } from "./helpers/journal.ts";

const MESSAGE_STEPS = ["accepted", "attempt", "delivered", "responded"];

async function echoBus(
  t: ExecutionContext,
): Promise<TestBus & { ask(text: string): Promise<string> }> {
  const bus = await startBus(t);
  const provider = await bus.addAgency("fns", ["provider"]);
  const consumer = await bus.addAgency("mfc", ["consumer"]);
  await bus.admin.call("service.put", { service: { id: "echo", owner: "fns" } });
  await waitFor(() => bus.broker.view.get("echo") !== undefined);
  provider.provide("echo", (req) => req.payload);
  const ask = async (text: string) => {
    const answer = await consumer.request("echo", text, { timeoutMs: 10_000 });
    t.is(new TextDecoder().decode(answer.payload), text);
    return answer.correlationId!;
  };
  return { ...bus, ask };
}

/** A second broker node process-alike: same node id, same data dir, so the same journal. */
async function restartBroker(t: ExecutionContext, bus: TestBus): Promise<BrokerNode> {
  await bus.broker.close();
  const broker = await BrokerNode.start({
    nodeId: bus.broker.nodeId,
    nats: { servers: bus.server.url },
    dataDir: bus.dir,
    log: rootLogger.child({ test: "journal-restart" }),
  });
  t.teardown(() => broker.close());
  return broker;
}

function journalDir(bus: TestBus): string {
  return path.join(bus.dir, "journal", bus.broker.nodeId);
}

test("an answered message's trace lists accepted, attempt, delivered, responded in order", async (t) => {
  const bus = await echoBus(t);
  const id = await bus.ask("hello");

  const records = await journaled(bus.broker, id, "responded");
  t.deepEqual(
    records.map((r) => r.event.type),
    MESSAGE_STEPS,
  );
  for (const { event } of records) {
    t.is(event.id, id);
    t.is(event.service, "echo");
    t.is(event.agency, "mfc");
  }
  const attempt = records.find((r) => r.event.type === "attempt")!;
  t.is(attempt.event.attempt, 1);
  const seqs = records.map((r) => r.seq);
  t.deepEqual(
    seqs,
    [...seqs].sort((a, b) => a - b),
    "journal order is step order",
  );
});

test("journal records survive a broker restart", async (t) => {
  const bus = await echoBus(t);
  const id = await bus.ask("before restart");
  const before = await journaled(bus.broker, id, "responded");

  const broker = await restartBroker(t, bus);

  const after = await broker.trace(id);
  t.deepEqual(after, before);
  await waitFor(() => broker.view.get("echo") !== undefined);
  const later = await bus.ask("after restart");
  const laterRecords = await journaled(broker, later, "responded");
  t.deepEqual(
    laterRecords.map((r) => r.event.type),
    MESSAGE_STEPS,
  );
  t.true(laterRecords[0]!.seq > before.at(-1)!.seq, "the chain continues after the restart");
});

test("each journal record carries the hash of the record before it", async (t) => {
  const bus = await echoBus(t);
  const ids = await Promise.all(["a", "b", "c"].map((text) => bus.ask(text)));
  await Promise.all(ids.map((id) => journaled(bus.broker, id, "responded")));
  const dir = journalDir(bus);
  await bus.broker.close();

  const store = await JournalStore.open(dir);
  t.teardown(() => store.close());
  let previous = "";
  let count = 0;
  for await (const record of store.records()) {
    t.is(record.prev, previous, `record ${record.seq} links to ${record.seq - 1}`);
    t.is(record.seq, count + 1);
    previous = record.hash;
    count++;
  }
  t.true(count >= ids.length * MESSAGE_STEPS.length);
  t.is(count, store.size);
});
