import { existsSync } from "node:fs";
import path from "node:path";
import test from "ava";
import { egrulExtract } from "../examples/providers.ts";
import { xsdSchema } from "../scripts/admin/schema-files.ts";
import { BrokerNode } from "../src/broker.ts";
import { RequestFailedError } from "../src/client.ts";
import { runtimeFile } from "../src/config.ts";
import { startEmbeddedNats } from "../src/embedded.ts";
import type { JournalRecord } from "../src/journal-store.ts";
import type { Agency, ServiceDef } from "../src/registry.ts";
import { runScript } from "./helpers/admin-cli.ts";
import { startBus, waitFor } from "./helpers/bus.ts";
import { tempDir } from "./helpers/nats.ts";

const ADMIN = path.resolve("scripts/admin.ts");
const BIN = path.resolve("scripts/magistral.mjs");
const EGRUL_XSD = path.resolve("examples/schemas/fns-egrul-extract/egrul-extract.xsd");
const EGRUL_NS = "urn://magistral-example/fns/egrul-extract/1.0.0";

/** Runs the admin script (or another script) as an operator would, in a child process. */
function run(args: string[], env: NodeJS.ProcessEnv = {}, script = ADMIN) {
  return runScript(script, args, { env });
}

function egrulRequest(requestId: string, ogrn: string): string {
  return `<EgrulExtractRequest xmlns="${EGRUL_NS}" RequestId="${requestId}"><OGRN>${ogrn}</OGRN><Purpose>PUBLIC_SERVICE</Purpose></EgrulExtractRequest>`;
}

test("registers agencies and an XSD service bundle, then lists and shows them", async (t) => {
  const bus = await startBus(t);
  const admin = (...args: string[]) => run(["--server", bus.server.url, ...args]);

  const [fns, mfc] = await Promise.all([
    admin(
      "--json",
      "register-agency",
      "fns",
      "--name",
      "Tax service",
      "--roles",
      "consumer,provider",
    ),
    admin("register-agency", "mfc", "--roles", "consumer", "--contact", "it@mfc.example"),
  ]);
  t.deepEqual(JSON.parse(fns.stdout).roles, ["consumer", "provider"]);
  t.is(mfc.stdout.trim(), "registered agency mfc (consumer)");
  const listed = JSON.parse((await admin("agencies", "--json")).stdout) as Agency[];
  t.deepEqual(
    listed.map((a) => a.id),
    ["fns", "mfc"],
  );

  const registered = await admin(
    ...["register-service", "fns-egrul-extract", "--owner", "fns", "--version", "1.2.0"],
    ...["--timeout-ms", "5000", "--xsd", EGRUL_XSD, "--root", "EgrulExtractRequest"],
    ...["--software-name", "egrul-gateway", "--host", "egrul-gw-01.fns.example", "--json"],
  );
  t.is(registered.code, 0, registered.stderr);
  const def = JSON.parse(registered.stdout) as ServiceDef;
  t.like(def.schema, { kind: "xsd", namespace: EGRUL_NS, rootElement: "EgrulExtractRequest" });
  t.is(def.callTimeoutMs, 5_000);

  const [table, shown] = await Promise.all([
    admin("services"),
    admin("service", "fns-egrul-extract"),
  ]);
  t.regex(table.stdout, /^ID\s+VERSION\s+OWNER\s+STATUS\s+SCHEMA\s+TIMEOUT$/m);
  t.regex(
    table.stdout,
    /^fns-egrul-extract\s+1\.2\.0\s+fns\s+active\s+xsd EgrulExtractRequest\s+5s$/m,
  );
  t.regex(shown.stdout, /^software:\s+egrul-gateway$/m);
  t.regex(shown.stdout, /^host:\s+egrul-gw-01\.fns\.example$/m);
});

test("traces a responded and a refused message from the journal", async (t) => {
  const bus = await startBus(t);
  const provider = await bus.addAgency("fns");
  const consumer = await bus.addAgency("mfc", ["consumer"]);
  const schema = xsdSchema(EGRUL_XSD, "EgrulExtractRequest");
  await bus.admin.call("service.put", { service: { id: "egrul", owner: "fns" }, schema });
  await waitFor(() => bus.broker.view.get("egrul") !== undefined);
  provider.provide("egrul", egrulExtract);

  await consumer.request("egrul", egrulRequest("T-1", "1157746012346"), { id: "trace-ok-1" });
  const refused = consumer.submit("egrul", egrulRequest("T-2", "12345"), { id: "trace-bad-1" });
  await t.throwsAsync(refused, { instanceOf: RequestFailedError });
  await waitFor(async () => {
    const records: JournalRecord[] = await bus.broker.trace("trace-ok-1");
    const steps = records.map((r) => r.event.type);
    return steps.includes("responded");
  });
  await waitFor(async () => (await bus.broker.trace("trace-bad-1")).length > 0);

  const [ok, bad, json] = await Promise.all([
    run(["--server", bus.server.url, "trace", "trace-ok-1"]),
    run(["--server", bus.server.url, "trace", "trace-bad-1"]),
    run(["--server", bus.server.url, "--json", "trace", "trace-ok-1"]),
  ]);
  t.regex(ok.stdout, /^message trace-ok-1 {2}service egrul {2}from mfc {2}to fns$/m);
  t.regex(ok.stdout, /^path: accepted > attempt 1 > delivered \d+ms > responded \d+ms$/m);
  t.regex(ok.stdout, /^TIME\s+AFTER\s+STEP\s+ATTEMPT\s+NODE\s+DETAIL\s+JOURNAL$/m);
  t.regex(bad.stdout, /^path: rejected SCHEMA_INVALID$/m);
  const steps = JSON.parse(json.stdout).map((r: { event: { type: string } }) => r.event.type);
  t.deepEqual(steps, ["accepted", "attempt", "delivered", "responded"]);
});

test("fails with one coded line and a non-zero exit", async (t) => {
  const bus = await startBus(t);
  const [missing, unreachable, usage] = await Promise.all([
    run(["--server", bus.server.url, "service", "nope"]),
    run(["--server", "nats://127.0.0.1:1", "agencies"]),
    run(["--server", bus.server.url, "register-service", "svc", "--xsd", "/nonexistent/a.xsd"]),
  ]);
  t.is(missing.code, 1);
  t.is(missing.stderr, "error NOT_FOUND: no service nope\n");
  t.is(unreachable.code, 1);
  t.regex(
    unreachable.stderr,
    /^error UNAVAILABLE: cannot connect to nats:\/\/127\.0\.0\.1:1: [^\n]+\n$/,
  );
  t.is(usage.code, 1);
  t.regex(usage.stderr, /^error BAD_REQUEST: cannot read \/nonexistent\/a\.xsd\n$/);
});

test("the magistral command finds an embedded bus through its runtime file", async (t) => {
  const dataDir = tempDir(t);
  const nats = await startEmbeddedNats({ dataDir, embeddedPort: 0, nodeId: "admin-test" });
  t.teardown(() => nats.stop());
  const broker = await BrokerNode.start({
    nodeId: "admin-test",
    nats: { servers: nats.url },
    dataDir,
  });
  t.teardown(() => broker.close());
  t.true(existsSync(runtimeFile(dataDir)));

  const health = await run(["--json", "health"], { MAGISTRAL_DATA_DIR: dataDir }, BIN);

  t.is(health.code, 0, health.stderr);
  t.deepEqual(JSON.parse(health.stdout), []);
  await broker.close();
  await nats.stop();
  t.false(existsSync(runtimeFile(dataDir)));
});
