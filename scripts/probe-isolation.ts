// `npm run probe-isolation`: connects as each agency and tries every action
// its NATS permissions must refuse (another agency's subjects, consumers and
// inboxes, the streams, the KV buckets, the admin API), and checks that what
// its roles allow still works. Uses the running embedded bus when it has
// authorization and agency keys under its data dir; otherwise starts one in
// a temporary folder with the example agencies. Ends with
// `isolation: <n> probes, <breaches> breaches`; exits 1 on any breach.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { AGENCIES, SERVICES } from "../examples/catalog.ts";
import { AdminClient } from "../src/admin-client.ts";
import { BrokerNode } from "../src/broker.ts";
import { loadConfig } from "../src/config.ts";
import { readAgencyNkey, readOperatorLogin } from "../src/credentials.ts";
import { type EmbeddedNats, readRuntime, startEmbeddedNats } from "../src/embedded.ts";
import {
  allowedActions,
  forbiddenActions,
  type ProbeAgency,
  type ProbeOutcome,
  runProbes,
} from "../src/isolation-probes.ts";
import { rootLogger } from "../src/logger.ts";
import type { Agency, ServiceDef } from "../src/registry.ts";

/** What the probes need to know of the bus under test. */
interface Subject {
  servers: string[];
  agencies: (ProbeAgency & { roles: string[] })[];
  services: Pick<ServiceDef, "id" | "owner">[];
  close(): Promise<void>;
}

const say = (line: string) => process.stdout.write(`${line}\n`);

async function main(): Promise<number> {
  rootLogger.level = process.env.MAGISTRAL_LOG_LEVEL ?? "warn";
  const bus = (await runningBus()) ?? (await ownBus());
  let probes = 0;
  let breaches = 0;
  let controlsFailed = 0;
  try {
    for (const [i, self] of bus.agencies.entries()) {
      const victim = bus.agencies[(i + 1) % bus.agencies.length]!;
      const victimService =
        bus.services.find((s) => s.owner === victim.id) ??
        bus.services.find((s) => s.owner !== self.id);
      const target = {
        servers: bus.servers,
        self,
        victim: victim.id,
        victimService: victimService?.id ?? "no-such-service",
      };
      const forbidden = await runProbes(target, forbiddenActions({ ...target, self: self.id }));
      const allowed = await runProbes(target, allowedActions(self.id, self.roles));
      probes += forbidden.length;
      breaches += report(self.id, forbidden, true);
      controlsFailed += report(self.id, allowed, false);
    }
  } finally {
    await bus.close();
  }
  if (controlsFailed > 0) say(`isolation: ${controlsFailed} allowed actions were refused`);
  say(`isolation: ${probes} probes, ${breaches} breaches`);
  return breaches > 0 || controlsFailed > 0 ? 1 : 0;
}

/** Prints each outcome; returns how many went the wrong way. */
function report(agency: string, outcomes: ProbeOutcome[], mustDeny: boolean): number {
  let wrong = 0;
  for (const { probe, denied, detail } of outcomes) {
    const ok = denied === mustDeny;
    if (!ok) wrong++;
    const verdict = mustDeny ? (ok ? "denied " : "BREACH ") : ok ? "allowed" : "REFUSED";
    say(
      `  ${agency.padEnd(10)} ${verdict} ${probe.name}: ${probe.kind} ${probe.subject} (${detail})`,
    );
  }
  return wrong;
}

/** The embedded bus running under the data dir, if it has authorization and agency keys. */
async function runningBus(): Promise<Subject | undefined> {
  const dataDir = loadConfig().dataDir;
  const running = readRuntime(dataDir);
  if (!running?.credentialsDir) return undefined;
  const login = readOperatorLogin(path.dirname(running.credentialsDir));
  if (!login) return undefined;
  const admin = await AdminClient.connect({ servers: running.servers, ...login });
  try {
    const registered = await admin.call<Agency[]>("agency.list");
    const services = await admin.call<ServiceDef[]>("service.list");
    const agencies = registered.flatMap((a) => {
      const file = path.join(running.credentialsDir!, `${a.id}.nk`);
      if (!readdirSync(running.credentialsDir!).includes(`${a.id}.nk`)) return [];
      return [{ ...readAgencyNkey(file, a.id), id: a.id, roles: a.roles as string[] }];
    });
    if (agencies.length < 2) return undefined;
    say(`isolation: probing the running bus at ${running.servers.join(",")}`);
    return { servers: running.servers, agencies, services, close: async () => {} };
  } finally {
    await admin.close();
  }
}

/** An embedded bus with authorization in a temporary folder, with the example agencies. */
async function ownBus(): Promise<Subject> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "mg-probe-"));
  let nats: EmbeddedNats | undefined;
  let broker: BrokerNode | undefined;
  const close = async () => {
    await broker?.close();
    await nats?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    nats = await startEmbeddedNats({ dataDir, embeddedPort: 0, nodeId: "probe", auth: true });
    const auth = nats.auth!;
    const servers = [nats.url];
    broker = await BrokerNode.start({
      nodeId: "probe",
      dataDir,
      nats: { servers, ...auth.broker },
    });
    await auth.follow(broker.bus, rootLogger);
    const admin = await AdminClient.connect({ servers, ...auth.operator });
    // A reload pauses the JetStream API: a registration that meets one is sent again.
    const call = (op: string, body: Record<string, unknown>) =>
      admin.call(op, body).catch(async () => {
        await auth.settled();
        return admin.call(op, body);
      });
    const agencies = [];
    for (const a of AGENCIES) {
      const key = auth.agencyNkey(a.id);
      await call("agency.put", { ...a, credentials: { nkeys: [key.publicKey] } });
      agencies.push({ id: a.id, seed: key.seed, roles: a.roles as string[] });
    }
    const services = SERVICES.map((s) => ({ id: s.id, owner: s.owner }));
    for (const s of services) await call("service.put", { service: s });
    await admin.close();
    await auth.settled({
      agencies: AGENCIES.map((a) => a.id),
      services: services.map((s) => s.id),
    });
    say(`isolation: probing a new embedded bus at ${nats.url}`);
    return { servers, agencies, services, close };
  } catch (err) {
    await close();
    throw err;
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`isolation: failed: ${err instanceof Error ? err.stack : err}\n`);
    process.exitCode = 1;
  },
);
