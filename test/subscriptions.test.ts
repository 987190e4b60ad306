import path from "node:path";
import test from "ava";
import { BrokerNode } from "../src/broker.ts";
import type { AgencyClient } from "../src/client.ts";
import type { BusEvent } from "../src/client-events.ts";
import { encodeValue } from "../src/envelope.ts";
import { rootLogger } from "../src/logger.ts";
import { connectBus } from "../src/nats.ts";
import { consumerName, STREAM, subject } from "../src/subjects.ts";
import type { EventSubscription, Notification } from "../src/subscriptions.ts";
import { waitFor } from "./helpers/bus.ts";
import { startObservedBus } from "./helpers/observed-bus.ts";

const STEPS = ["accepted", "attempt", "delivered", "responded"];

/** Reads and acknowledges notifications until `count` have come, or fails after `timeoutMs`. */
async function take(client: AgencyClient, count: number, timeoutMs = 15_000) {
  const got: Notification[] = [];
  const events = client.events();
  // Closing the connection ends the reading, so a missing event fails the test instead of hanging it.
  const deadline = setTimeout(() => void client.close(), timeoutMs);
  try {
    for await (const e of events as AsyncGenerator<BusEvent>) {
      got.push(e.notification);
      e.ack();
      if (got.length >= count) break;
    }
  } finally {
    clearTimeout(deadline);
  }
  return got;
}

test("a subscriber offline during a burst gets all of its events after reconnecting, none of another's", async (t) => {
  const bus = await startObservedBus(t);
  const fns = await bus.addAgency("fns", ["provider"]);
  await bus.addService({ id: "echo", owner: "fns" });
  fns.provide("echo", (req) => req.payload);
  const mfcSubmitter = await bus.addAgency("mfc", ["consumer", "subscriber"]);
  const mvd = await bus.addAgency("mvd", ["consumer", "subscriber"]);
  const mfcWatcher = await bus.connect("mfc");
  const reply = await mfcWatcher.subscribe({ kinds: ["status"] });
  t.like(reply, { stream: STREAM.notify, consumer: consumerName.notify("mfc") });
  await mvd.subscribe({ kinds: ["status"] });
  await mfcWatcher.close();

  const burst = await Promise.all(
    Array.from({ length: 10 }, (_, i) => mfcSubmitter.request("echo", `m${i}`)),
  );
  const others = await Promise.all(
    Array.from({ length: 3 }, (_, i) => mvd.request("echo", `o${i}`)),
  );
  await bus.broker.flushEvents();

  const back = await bus.connect("mfc");
  const got = await take(back, burst.length * STEPS.length);

  const mine = new Set(burst.map((a) => a.correlationId!));
  t.true(got.every((n) => n.kind === "status" && mine.has(n.message!.id)));
  const expected = [...mine].flatMap((id) => STEPS.map((step) => `${id}:${step}`)).sort();
  t.deepEqual(got.map((n) => `${n.message!.id}:${n.message!.type}`).sort(), expected);
  t.false(got.some((n) => others.some((o) => o.correlationId === n.message!.id)));

  await waitFor(async () => {
    const info = await bus.broker.bus.jsm.consumers.info(STREAM.notify, consumerName.notify("mfc"));
    return info.num_pending === 0 && info.num_ack_pending === 0;
  });
  const theirs = await take(mvd, others.length * STEPS.length);
  t.true(theirs.every((n) => others.some((o) => o.correlationId === n.message!.id)));
});

test("subscriptions survive a broker restart; lifecycle, registry and health events reach their subscribers", async (t) => {
  const bus = await startObservedBus(t);
  await bus.addAgency("fns", ["provider"]);
  await bus.addService({ id: "echo", owner: "fns" });
  await bus.addService({ id: "other", owner: "fns" });
  const mfc = await bus.addAgency("mfc", ["consumer", "subscriber"]);
  const fnsWatcher = await bus.connect("fns");
  await mfc.subscribe({ kinds: ["lifecycle", "health"], services: ["echo"] });
  await fnsWatcher.subscribe({ id: "mine", kinds: ["registry"] });
  const bad = await t.throwsAsync(mfc.subscribe({ kinds: ["gossip" as never] }));
  t.is((bad as { code?: string }).code, "BAD_REQUEST");

  await bus.broker.close();
  const broker = await BrokerNode.start({
    nodeId: bus.broker.nodeId,
    nats: { servers: bus.server.url },
    dataDir: bus.dir,
    log: rootLogger.child({ test: path.basename(bus.dir) }),
  });
  t.teardown(() => broker.close());
  await waitFor(() => broker.observe.subscriptions.list().length === 2);

  for (const id of ["other", "echo"]) {
    await bus.admin.call("service.put", { service: { id, owner: "fns", status: "suspended" } });
  }
  await waitFor(() => broker.view.get("echo")?.status === "suspended");
  const bus2 = await connectBus({ servers: bus.server.url });
  t.teardown(() => bus2.nc.drain());
  const alert = { id: "a1", kind: "circuit_opened", severity: "warning", service: "echo" };
  await bus2.js.publish(
    subject.alert("warning", "echo"),
    encodeValue({ ...alert, provider: "fns", node: "x", at: Date.now(), message: "opened" }),
  );

  // EVENTS and ALERTS are read apart, so the two may come in either order.
  const byKind = new Map((await take(mfc, 2)).map((n) => [n.kind, n]));
  const lifecycle = byKind.get("lifecycle");
  const health = byKind.get("health");
  t.like(lifecycle, { kind: "lifecycle", service: "echo" });
  t.like(lifecycle!.lifecycle, { before: "active", after: "suspended" });
  t.like(health, { kind: "health", service: "echo" });
  t.like(health!.health, { alert: "circuit_opened", provider: "fns" });

  const registry = await take(fnsWatcher, 2);
  t.deepEqual(
    registry.map((n) => [n.kind, n.change!.key, n.change!.who]),
    [
      ["registry", "other", "operator"],
      ["registry", "echo", "operator"],
    ],
  );

  const listed = await bus.admin.call<EventSubscription[]>("subscription.list", { agency: "fns" });
  t.deepEqual(
    listed.map((s) => s.id),
    ["mine"],
  );
  t.true(await fnsWatcher.unsubscribe("mine"));
  await waitFor(() => broker.observe.subscriptions.list("fns").length === 0);
  t.deepEqual(await fnsWatcher.subscriptions(), []);
});
