import test from "ava";
import type { Alert } from "../actors/alerts.ts";
import type { LaneHealth } from "../actors/lane.ts";
import { ProviderFault, RequestFailedError } from "../src/client.ts";
import type { DeadLetter } from "../src/deadletter.ts";
import type { ServiceDef } from "../src/registry.ts";
import { queueStream, subject } from "../src/subjects.ts";
import { startBroker, startBus, type TestBus, waitFor } from "./helpers/bus.ts";
import { tempDir } from "./helpers/nats.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** Fast retries and a quick circuit, so outages fit in a test. */
const FAST = {
  callTimeoutMs: 1_000,
  retry: { attempts: 60, firstDelayMs: 100, factor: 1.5, maxDelayMs: 300, jitter: 0.1 },
  circuit: { consecutiveFailures: 3, openMs: 300, minCalls: 1000 },
};

async function register(
  bus: TestBus,
  service: Partial<ServiceDef> & { id: string; owner: string },
) {
  await bus.admin.call("service.put", { service: { ...FAST, ...service } });
  await waitFor(() => bus.broker.view.get(service.id)?.updatedAt !== undefined);
}

async function alerts(bus: TestBus, service: string): Promise<Alert[]> {
  return bus.admin.call<Alert[]>("alert.list", { service, limit: 100 });
}

test("provider down for several retry delays, then back: all answered once, one down and one recovered alert", async (t) => {
  const bus = await startBus(t);
  const fns = await bus.addAgency("fns");
  const mfc = await bus.addAgency("mfc");
  await register(bus, { id: "extract", owner: "fns" });

  const ids = await Promise.all(Array.from({ length: 20 }, () => mfc.submit("extract", "<q/>")));
  await waitFor(async () => (await alerts(bus, "extract")).some((a) => a.kind === "service_down"));
  const health = await bus.admin.call<LaneHealth[]>("service.health");
  t.is(health.find((h) => h.service === "extract")?.state, "down");

  const calls = new Map<string, number>();
  fns.provide("extract", (req) => {
    calls.set(req.id, (calls.get(req.id) ?? 0) + 1);
    return `<answer id="${req.id}"/>`;
  });
  const answers = new Map<string, number>();
  for await (const reply of mfc.responses()) {
    reply.ack();
    const id = reply.envelope.correlationId!;
    answers.set(id, (answers.get(id) ?? 0) + 1);
    if (answers.size === ids.length) break;
  }
  await waitFor(async () =>
    (await alerts(bus, "extract")).some((a) => a.kind === "service_recovered"),
  );
  await new Promise((r) => setTimeout(r, 300));

  t.deepEqual([...answers.keys()].sort(), ids.map((i) => i.id).sort());
  t.true([...answers.values()].every((n) => n === 1));
  const kinds = (await alerts(bus, "extract")).map((a) => a.kind);
  t.is(kinds.filter((k) => k === "service_down").length, 1);
  t.is(kinds.filter((k) => k === "service_recovered").length, 1);
});

test("attempts spent: dead-lettered with a final status, then replayed with the same id", async (t) => {
  const bus = await startBus(t);
  const fns = await bus.addAgency("fns");
  const mfc = await bus.addAgency("mfc");
  await register(bus, {
    id: "check",
    owner: "fns",
    retry: { ...FAST.retry, attempts: 3 },
    circuit: { ...FAST.circuit, consecutiveFailures: 100 },
  } as Partial<ServiceDef> & { id: string; owner: string });
  fns.provide("check", () => {
    throw new Error("registry offline");
  });

  const err = await t.throwsAsync(mfc.request("check", "<q/>", { id: "msg-dead-1" }), {
    instanceOf: RequestFailedError,
  });
  t.is(err?.code, "PROVIDER_FAULT");
  await waitFor(async () => (await mfc.status("msg-dead-1")).state === "dead-lettered");
  const letters = await bus.admin.call<DeadLetter[]>("dlq.list", { service: "check" });
  t.is(letters.length, 1);
  t.is(letters[0]?.id, "msg-dead-1");
  t.is(letters[0]?.attempts, 3);
  t.is(letters[0]?.reason, "PROVIDER_FAULT");

  const other = await bus.addAgency("pfr");
  await t.throwsAsync(other.status("msg-dead-1"), { message: /no message/ });

  await fns.close();
  const fixed = await bus.agency("fns");
  fixed.provide("check", (req) => `<ok attempt="${req.attempt}"/>`);
  await bus.admin.call("dlq.replay", { seq: letters[0]!.seq });
  for await (const reply of mfc.responses()) {
    reply.ack();
    if (reply.envelope.kind !== "response") continue;
    t.is(reply.envelope.correlationId, "msg-dead-1");
    t.is(text(reply.envelope.payload), '<ok attempt="1"/>');
    break;
  }
  t.deepEqual(await bus.admin.call("dlq.list", { service: "check" }), []);
  await waitFor(async () => (await mfc.status("msg-dead-1")).state === "responded");
});

test("lifetime spent: the message expires into DEADLETTER with EXPIRED", async (t) => {
  const bus = await startBus(t);
  await bus.addAgency("fns");
  const mfc = await bus.addAgency("mfc");
  await register(bus, { id: "slow", owner: "fns" });

  const err = await t.throwsAsync(mfc.request("slow", "<q/>", { id: "msg-exp-1", ttlMs: 700 }), {
    instanceOf: RequestFailedError,
  });
  t.is(err?.code, "EXPIRED");
  await waitFor(async () => (await mfc.status("msg-exp-1")).state === "expired");
  const letters = await bus.admin.call<DeadLetter[]>("dlq.list", { service: "slow" });
  t.is(letters[0]?.reason, "EXPIRED");
});

test("a repeated submit returns the first outcome and is delivered once", async (t) => {
  const bus = await startBus(t);
  const fns = await bus.addAgency("fns");
  const mfc = await bus.addAgency("mfc");
  await register(bus, { id: "once", owner: "fns" });
  let calls = 0;
  fns.provide("once", (req) => {
    calls++;
    return `<ok id="${req.id}" attempt="${req.attempt}"/>`;
  });

  const answer = await mfc.request("once", "<q/>", { id: "same-id" });
  t.is(text(answer.payload), '<ok id="same-id" attempt="1"/>');
  const again = await mfc.submit("once", "<q/>", { id: "same-id" });
  t.true(again.duplicate);
  const thief = await bus.addAgency("pfr");
  const stolen = await t.throwsAsync(thief.submit("once", "<q/>", { id: "same-id" }));
  t.is((stolen as RequestFailedError).code, "DUPLICATE_ID");
  await new Promise((r) => setTimeout(r, 300));
  t.is(calls, 1);
});

test("broadcast: every provider gets the request and the consumer gets each answer", async (t) => {
  const bus = await startBus(t);
  const a = await bus.addAgency("region-a");
  const b = await bus.addAgency("region-b");
  const mfc = await bus.addAgency("mfc");
  await register(bus, {
    id: "notice",
    owner: "region-a",
    broadcast: true,
    providers: ["region-a", "region-b"],
  } as Partial<ServiceDef> & { id: string; owner: string });
  a.provide("notice", () => "<a/>");
  b.provide("notice", () => "<b/>");

  const { id } = await mfc.submit("notice", "<n/>");
  const got = new Map<string, string>();
  for await (const reply of mfc.responses()) {
    reply.ack();
    t.is(reply.envelope.correlationId, id);
    got.set(reply.envelope.provider!, text(reply.envelope.payload));
    if (got.size === 2) break;
  }
  t.deepEqual(Object.fromEntries(got), { "region-a": "<a/>", "region-b": "<b/>" });
});

test("an open circuit stops calling: waiting requests stay in the stream", async (t) => {
  const bus = await startBus(t);
  const fns = await bus.addAgency("fns");
  const mfc = await bus.addAgency("mfc");
  await register(bus, {
    id: "gate",
    owner: "fns",
    circuit: { ...FAST.circuit, openMs: 60_000 },
  } as Partial<ServiceDef> & { id: string; owner: string });
  let calls = 0;
  fns.provide("gate", () => {
    calls++;
    throw new Error("down for maintenance");
  });
  for (let i = 0; i < 30; i++) await mfc.submit("gate", "<q/>");
  await waitFor(async () => (await alerts(bus, "gate")).some((a) => a.kind === "circuit_opened"));
  const callsWhenOpened = calls;
  await new Promise((r) => setTimeout(r, 1_000));

  t.is(calls, callsWhenOpened);
  t.true(calls <= FAST.circuit.consecutiveFailures + 1);
  const stream = await bus.broker.bus.jsm.streams.info(queueStream("gate"), {
    subjects_filter: subject.queue("gate"),
  });
  t.is(stream.state.messages, 30);
  const health = await bus.admin.call<LaneHealth[]>("service.health");
  t.is(health.find((h) => h.service === "gate")?.circuit, "open");
});

test("health is gathered from every broker node, for operators and for agencies", async (t) => {
  const bus = await startBus(t);
  const second = await startBroker(t, bus.server, tempDir(t));
  const fns = await bus.addAgency("fns");
  const mfc = await bus.addAgency("mfc");
  await register(bus, { id: "watched", owner: "fns" });
  await waitFor(() => second.view.get("watched") !== undefined);
  fns.provide("watched", () => "<ok/>");
  await mfc.request("watched", "<q/>");

  const lanes = await bus.admin.call<LaneHealth[]>("service.health");
  const nodes = lanes.filter((l) => l.service === "watched").map((l) => l.node);
  t.deepEqual(nodes.sort(), [bus.broker.nodeId, second.nodeId].sort());
  const [summary] = await mfc.health("watched");
  t.is(summary?.state, "up");
  t.is(summary?.nodes, 2);
  t.truthy(summary?.lastSuccessAt);
});

test("a provider fault marked final ends delivery at the first attempt", async (t) => {
  const bus = await startBus(t);
  const fns = await bus.addAgency("fns");
  const mfc = await bus.addAgency("mfc");
  await register(bus, { id: "strict", owner: "fns" });
  let calls = 0;
  fns.provide("strict", () => {
    calls++;
    throw new ProviderFault("no such taxpayer", false);
  });
  const err = await t.throwsAsync(mfc.request("strict", "<q/>", { id: "final-1" }), {
    instanceOf: RequestFailedError,
  });
  t.is(err?.code, "PROVIDER_FAULT");
  t.regex(err?.message ?? "", /no such taxpayer/);
  t.is(calls, 1);
  await waitFor(async () => (await mfc.status("final-1")).state === "dead-lettered");
});

test("two services cannot claim the same XML root element", async (t) => {
  const bus = await startBus(t);
  await bus.addAgency("fns");
  const xsd = (ns: string) =>
    `<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="${ns}" elementFormDefault="qualified"><xs:element name="Req" type="xs:string"/></xs:schema>`;
  const schema = (ns: string) => ({
    kind: "xsd",
    main: "s.xsd",
    files: { "s.xsd": xsd(ns) },
    rootElement: "Req",
  });
  await bus.admin.call("service.put", {
    service: { id: "first", owner: "fns" },
    schema: schema("urn:a"),
  });
  await waitFor(() => bus.broker.view.get("first") !== undefined);
  const err = await t.throwsAsync(
    bus.admin.call("service.put", {
      service: { id: "second", owner: "fns" },
      schema: schema("urn:a"),
    }),
  );
  t.regex(err?.message ?? "", /already routes to first/);
  await t.notThrowsAsync(
    bus.admin.call("service.put", {
      service: { id: "second", owner: "fns" },
      schema: schema("urn:b"),
    }),
  );
});
