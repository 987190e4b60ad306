import test from "ava";
import { type AgencyClient, RequestFailedError } from "../src/client.ts";
import { startBus, waitFor } from "./helpers/bus.ts";

const RATE_PER_SECOND = 20;
const BURST = 20;
const FLOOD_MS = 3_000;
const FLOOD_IN_FLIGHT = 48;
const CALM_INTERVAL_MS = 100;

test("one agency flooding far past its rate limit slows no one else and loses nothing accepted", async (t) => {
  const bus = await startBus(t);
  const fns = await bus.addAgency("fns", ["provider"]);
  const flooder = await bus.addAgency("mfc", ["consumer"]);
  const calm = [await bus.addAgency("pfr", ["consumer"]), await bus.addAgency("fss", ["consumer"])];
  await bus.admin.call("service.put", {
    service: { id: "svc", owner: "fns", policy: { ratePerSecond: RATE_PER_SECOND, burst: BURST } },
  });
  await waitFor(() => bus.broker.view.get("svc") !== undefined);
  fns.provide("svc", (req) => req.payload);

  const startedMs = Date.now();
  const [flood, ...calmLatencies] = await Promise.all([
    floodUntil(flooder, startedMs + FLOOD_MS),
    ...calm.map((c) => steadyRequests(c, startedMs + FLOOD_MS)),
  ]);
  const elapsedMs = Date.now() - startedMs;

  const allowed = BURST + (RATE_PER_SECOND * elapsedMs) / 1000;
  t.log(
    `flood: ${flood.sent} sent in ${elapsedMs}ms, ${flood.accepted.size} accepted ` +
      `(at most ${allowed.toFixed(0)} allowed), ${flood.limited} RATE_LIMITED`,
  );
  t.true(flood.sent > 20 * allowed, "the flood is far past the limit");
  t.true(flood.accepted.size <= allowed);
  t.true(flood.accepted.size >= BURST);
  t.is(flood.other, 0);
  const latencies = calmLatencies.flat().sort((a, b) => a - b);
  t.log(`calm agencies: ${latencies.length} requests, max ${latencies.at(-1)}ms`);
  // Requests wait their answer and 100 ms; even on a loaded machine each calm agency gets 10 through.
  t.true(latencies.length >= 20);
  t.true(latencies.at(-1)! < 5_000);

  await everyAnswerArrives(flooder, flood.accepted);
  t.pass();
});

/** Submits as fast as it can until `untilMs`, many at once. */
async function floodUntil(client: AgencyClient, untilMs: number) {
  const result = { sent: 0, accepted: new Set<string>(), limited: 0, other: 0 };
  const worker = async () => {
    while (Date.now() < untilMs) {
      result.sent++;
      try {
        const { id } = await client.submit("svc", "flood");
        result.accepted.add(id);
      } catch (err) {
        if (err instanceof RequestFailedError && err.code === "RATE_LIMITED") result.limited++;
        else result.other++;
      }
    }
  };
  await Promise.all(Array.from({ length: FLOOD_IN_FLIGHT }, worker));
  return result;
}

/** Requests at a steady pace well under the limit; returns each round trip in ms. */
async function steadyRequests(client: AgencyClient, untilMs: number): Promise<number[]> {
  const latencies: number[] = [];
  while (Date.now() < untilMs) {
    const sentMs = Date.now();
    await client.request("svc", "calm", { timeoutMs: 10_000 });
    latencies.push(Date.now() - sentMs);
    await new Promise((r) => setTimeout(r, CALM_INTERVAL_MS));
  }
  return latencies;
}

/** Reads the flooder's replies until every accepted request has its answer. */
async function everyAnswerArrives(client: AgencyClient, accepted: Set<string>) {
  const waiting = new Set(accepted);
  const deadline = setTimeout(() => client.nc.close(), 30_000);
  for await (const reply of client.responses()) {
    reply.ack();
    if (reply.envelope.kind === "response") waiting.delete(reply.envelope.correlationId!);
    if (waiting.size === 0) break;
  }
  clearTimeout(deadline);
  if (waiting.size > 0) throw new Error(`${waiting.size} accepted requests got no answer`);
}
