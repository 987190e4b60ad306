import test from "ava";
import type { AgencyNkey } from "../src/credentials.ts";
import {
  allowedActions,
  forbiddenActions,
  type Probe,
  type ProbeTarget,
  runProbes,
} from "../src/isolation-probes.ts";
import { waitFor } from "./helpers/bus.ts";
import { type SecureBus, startSecureBus } from "./helpers/secure-bus.ts";

// One bus for the file: every test below is one action, tried by a real
// agency connection against a nats-server running the rendered authorization.
const cleanups: (() => unknown)[] = [];
const ready = setUp();

test.after.always(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

interface Shared {
  bus: SecureBus;
  keys: Map<string, AgencyNkey>;
}

async function setUp(): Promise<Shared> {
  const bus = await startSecureBus((fn) => cleanups.push(fn));
  const keys = new Map<string, AgencyNkey>();
  keys.set("mfc", await bus.addAgency("mfc", ["consumer"]));
  keys.set("fns", await bus.addAgency("fns", ["consumer", "provider", "subscriber"]));
  keys.set("pfr", await bus.addAgency("pfr", ["provider"]));
  await bus.admin.call("service.put", { service: { id: "fns-svc", owner: "fns" } });
  await bus.admin.call("service.put", { service: { id: "pfr-svc", owner: "pfr" } });
  await waitFor(() => !!bus.broker.view.get("fns-svc") && !!bus.broker.view.get("pfr-svc"));
  await bus.settled();
  return { bus, keys };
}

function target(shared: Shared, self: string, victim: string, victimService: string) {
  const key = shared.keys.get(self)!;
  const probeTarget: ProbeTarget = {
    servers: shared.bus.servers,
    self: { id: self, seed: key.seed },
    victim,
    victimService,
  };
  return probeTarget;
}

const views = [
  { self: "mfc", victim: "fns", victimService: "fns-svc" },
  { self: "fns", victim: "mfc", victimService: "pfr-svc" },
];

for (const view of views) {
  for (const probe of forbiddenActions(view)) {
    test(`${view.self} may not ${probe.name} (${probe.kind} ${probe.subject})`, async (t) => {
      const shared = await ready;
      const [outcome] = await runProbes(
        target(shared, view.self, view.victim, view.victimService),
        [probe],
      );
      t.true(outcome!.denied, outcome!.detail);
    });
  }
}

const controls: [string, string[]][] = [
  ["mfc", ["consumer"]],
  ["fns", ["consumer", "provider"]],
];
for (const [self, roles] of controls) {
  test(`${self} still may do what its roles allow`, async (t) => {
    const shared = await ready;
    const probes: Probe[] = allowedActions(self, roles);
    const outcomes = await runProbes(target(shared, self, "pfr", "pfr-svc"), probes);
    for (const o of outcomes) t.false(o.denied, `${o.probe.name}: ${o.detail}`);
  });
}
