// `npm run demo`: the whole bus on one machine, end to end. Starts an
// embedded nats-server and one broker node under <dataDir>/demo (wiped each
// run), registers the example agencies and services of examples/, runs their
// provider and consumer adapters, prints each message's path from the
// journal, and ends with `demo: <sent> sent, <responded> responded, <lost> lost`.
import { mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { AGENCIES, SERVICES } from "../examples/catalog.ts";
import { DEMO_REQUESTS } from "../examples/messages.ts";
import { PROVIDERS } from "../examples/providers.ts";
import { AdminClient } from "../src/admin-client.ts";
import { BrokerNode } from "../src/broker.ts";
import { AgencyClient } from "../src/client.ts";
import { loadConfig } from "../src/config.ts";
import { type EmbeddedNats, startEmbeddedNats } from "../src/embedded.ts";
import type { EmbeddedAuth } from "../src/embedded-auth.ts";
import { rootLogger } from "../src/logger.ts";
import type { ServiceDef } from "../src/registry.ts";
import { type Outcome, report, sendAll, traceAll } from "./demo/exchange.ts";

/** What runs, stopped in reverse order. */
interface Running {
  nats?: EmbeddedNats;
  broker?: BrokerNode;
  admin?: AdminClient;
  clients: AgencyClient[];
}

const say = (line: string) => process.stdout.write(`${line}\n`);

async function main(running: Running): Promise<number> {
  const startedAtMs = Date.now();
  const dataDir = path.join(loadConfig().dataDir, "demo");
  rmSync(dataDir, { recursive: true, force: true });
  mkdirSync(dataDir, { recursive: true });

  // With authorization: each agency logs in with its own nkey, made under
  // <dataDir>/credentials, and may use only its own subjects.
  running.nats = await startEmbeddedNats({ dataDir, embeddedPort: 0, nodeId: "demo", auth: true });
  const auth = running.nats.auth!;
  const nats = { servers: running.nats.url };
  running.broker = await BrokerNode.start({
    nodeId: "demo-node",
    nats: { ...nats, ...auth.broker },
    dataDir,
  });
  await auth.follow(running.broker.bus, rootLogger);
  running.admin = await AdminClient.connect({ ...nats, ...auth.operator });
  say(`demo: bus up at ${running.nats.url} in ${Date.now() - startedAtMs}ms, data in ${dataDir}`);

  await registerCatalog(running.admin, running.broker, auth);
  const clients = new Map<string, AgencyClient>();
  for (const agency of AGENCIES) {
    const nkeySeed = auth.agencyNkey(agency.id).seed;
    const client = await AgencyClient.connect({ agency: agency.id, nkeySeed, nats });
    running.clients.push(client);
    clients.set(agency.id, client);
  }
  for (const service of SERVICES)
    clients.get(service.owner)!.provide(service.id, PROVIDERS[service.id]!);

  const senders = [...new Set(DEMO_REQUESTS.map((r) => r.from))];
  say(`demo: ${DEMO_REQUESTS.length} requests from ${senders.join(", ")}`);
  const outcomes: Outcome[] = await sendAll(clients, DEMO_REQUESTS);
  await traceAll(running.admin, outcomes);
  const summary = report(outcomes, say);
  say(`demo: finished in ${((Date.now() - startedAtMs) / 1000).toFixed(1)}s`);
  say(`demo: ${summary.sent} sent, ${summary.responded} responded, ${summary.lost} lost`);
  return summary.lost > 0 || summary.unexpected > 0 ? 1 : 0;
}

/** Registers the example agencies and services, and waits until the broker sees them. */
async function registerCatalog(
  admin: AdminClient,
  broker: BrokerNode,
  auth: EmbeddedAuth,
): Promise<void> {
  for (const agency of AGENCIES) {
    const credentials = { nkeys: [auth.agencyNkey(agency.id).publicKey] };
    await admin.call("agency.put", { ...agency, credentials });
  }
  say(`demo: agencies ${AGENCIES.map((a) => `${a.id} (${a.roles.join("+")})`).join(", ")}`);
  for (const { schema, ...service } of SERVICES) {
    const def = await admin.call<ServiceDef>("service.put", { service, schema: schema() });
    const root = def.schema?.rootElement ? ` ${def.schema.rootElement}` : "";
    say(`demo: service ${def.id} ${def.version} of ${def.owner}: ${def.schema?.kind}${root}`);
  }
  await waitUntil(
    () =>
      AGENCIES.every((a) => broker.view.agency(a.id)) &&
      SERVICES.every((s) => broker.view.get(s.id)),
    "the broker did not see the registrations",
  );
  // The server reloads its authorization with the agencies' logins and services.
  await auth.settled({ agencies: AGENCIES.map((a) => a.id), services: SERVICES.map((s) => s.id) });
}

async function waitUntil(check: () => unknown, failure: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(failure);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function stopAll(running: Running): Promise<void> {
  await Promise.all(running.clients.map((c) => c.close()));
  await running.admin?.close();
  await running.broker?.close();
  await running.nats?.stop();
}

async function run(): Promise<void> {
  // The demo's output is its report; the bus's own logs show only trouble.
  rootLogger.level = process.env.MAGISTRAL_LOG_LEVEL ?? "warn";
  const running: Running = { clients: [] };
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= stopAll(running);
    return stopping;
  };
  process.once("SIGINT", () => {
    say("demo: interrupted");
    void stop().finally(() => process.exit(130));
  });
  try {
    process.exitCode = await main(running);
  } catch (err) {
    process.stderr.write(`demo: failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  } finally {
    await stop();
  }
}

await run();
