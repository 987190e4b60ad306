import test from "ava";
import { recordActorRestart } from "../src/metrics.ts";
import { waitFor } from "./helpers/bus.ts";
import { startObservedBus } from "./helpers/observed-bus.ts";

/** One sample of the text exposition: `name{labels} value`. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[k!] = v!;
    }
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

function value(
  samples: Sample[],
  name: string,
  labels: Record<string, string>,
): number | undefined {
  return samples.find(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  )?.value;
}

test("GET /metrics exposes messages, latencies, retries, queue depth, circuits and restarts", async (t) => {
  const bus = await startObservedBus(t, { metricsPort: 0 });
  const fns = await bus.addAgency("fns", ["provider"]);
  const mfc = await bus.addAgency("mfc", ["consumer"]);
  await bus.addService({ id: "echo", owner: "fns" });
  await bus.addService({
    id: "flaky",
    owner: "fns",
    retry: { attempts: 3, firstDelayMs: 20, factor: 1, maxDelayMs: 20, jitter: 0 },
  });
  fns.provide("echo", (req) => req.payload);
  let flakyCalls = 0;
  fns.provide("flaky", () => {
    flakyCalls++;
    if (flakyCalls === 1) throw new Error("first call fails");
    return "ok";
  });
  await Promise.all(Array.from({ length: 4 }, (_, i) => mfc.request("echo", `e${i}`)));
  await mfc.request("flaky", "f");
  recordActorRestart(bus.broker.nodeId, "journal");

  const port = bus.broker.observe.metricsPort!;
  const url = `http://127.0.0.1:${port}/metrics`;
  let samples: Sample[] = [];
  await waitFor(async () => {
    samples = parseExposition(await (await fetch(url)).text());
    return (
      value(samples, "magistral_messages_total", { service: "flaky", outcome: "responded" }) === 1
    );
  });
  const node = bus.broker.nodeId;

  const echo = { node, service: "echo" };
  t.is(value(samples, "magistral_messages_total", { ...echo, outcome: "accepted" }), 4);
  t.is(value(samples, "magistral_messages_total", { ...echo, outcome: "responded" }), 4);
  t.is(value(samples, "magistral_provider_call_seconds_count", echo), 4);
  t.is(value(samples, "magistral_provider_call_seconds_bucket", { ...echo, le: "+Inf" }), 4);
  t.is(value(samples, "magistral_response_seconds_count", echo), 4);
  t.is(value(samples, "magistral_retries_total", { service: "flaky" }), 1);
  t.is(value(samples, "magistral_messages_total", { service: "flaky", outcome: "failed" }), 1);
  t.is(value(samples, "magistral_queue_pending", echo), 0);
  t.is(value(samples, "magistral_queue_oldest_age_seconds", echo), 0);
  t.is(value(samples, "magistral_circuit_state", { ...echo, provider: "fns" }), 0);
  t.is(value(samples, "magistral_actor_restarts_total", { node, actor: "journal" }), 1);

  t.is((await fetch(`http://127.0.0.1:${port}/other`)).status, 404);
});
