import { readFileSync } from "node:fs";
import path from "node:path";
import { createUser } from "@nats-io/nkeys";
import test from "ava";
import { BrokerNode } from "../src/broker.ts";
import { readAgencyNkey } from "../src/credentials.ts";
import { startEmbeddedNats } from "../src/embedded.ts";
import { connectAs } from "../src/isolation-probes.ts";
import { rootLogger } from "../src/logger.ts";
import { runAdminCli } from "./helpers/admin-cli.ts";
import { startBrokerProcess } from "./helpers/broker-process.ts";
import { tempDir } from "./helpers/nats.ts";

/** Runs the admin script as an operator would, with the bus's data dir. */
function admin(args: string[], env: NodeJS.ProcessEnv) {
  return runAdminCli(args, env);
}

test("the admin script logs in to an embedded bus with authorization and manages its security", async (t) => {
  const dataDir = tempDir(t);
  const nats = await startEmbeddedNats({ dataDir, embeddedPort: 0, nodeId: "sec", auth: true });
  t.teardown(() => nats.stop());
  const auth = nats.auth!;
  const broker = await BrokerNode.start({
    nodeId: "sec",
    nats: { servers: nats.url, ...auth.broker },
    dataDir,
    log: rootLogger.child({ test: "security-admin" }),
  });
  t.teardown(() => broker.close());
  await auth.follow(broker.bus, rootLogger);
  const env = { MAGISTRAL_DATA_DIR: dataDir };
  const ok = async (args: string[]) => {
    const result = await admin(args, env);
    t.is(result.code, 0, `${args.join(" ")}: ${result.stderr}`);
    return result.stdout;
  };

  await ok(["register-agency", "mfc", "--roles", "consumer"]);
  await ok(["register-agency", "fns", "--roles", "provider"]);
  const seedFile = path.join(dataDir, "mfc-login.nk");
  const creds = await ok(["agency-credentials", "mfc", "--generate-nkey", seedFile]);
  await ok(["agency-credentials", "fns", "--nkey", createUser().getPublicKey()]);
  await ok(["register-service", "echo", "--owner", "fns"]);
  const policy = await ok(["set-policy", "echo", "--consumers", "mfc", "--rate", "5"]);
  const shown = await ok(["policy", "echo"]);
  const rendered = await ok(["auth", "render"]);
  const reloaded = await ok(["auth", "reload"]);

  const key = readAgencyNkey(seedFile, "mfc");
  t.true(creds.includes(key.publicKey));
  t.regex(policy, /rate:\s+5\/s/);
  t.regex(shown, /consumers:\s+mfc/);
  t.true(rendered.includes(`nkey: "${key.publicKey}"`));
  t.true(rendered.includes('"mg.call.echo"'));
  t.regex(reloaded, /^authorization (unchanged|written and reloaded): /);
  await auth.settled({ agencies: ["mfc", "fns"], services: ["echo"] });
  const mfc = await connectAs([nats.url], { id: "mfc", seed: key.seed });
  await mfc.close();
  t.is(readFileSync(auth.authFile, "utf8"), rendered);

  // From elsewhere, with no login: refused.
  const elsewhere = { MAGISTRAL_DATA_DIR: tempDir(t) };
  const anonymous = await admin(["--server", nats.url, "agencies"], elsewhere);
  t.is(anonymous.code, 1);
  t.regex(anonymous.stderr, /^error UNAVAILABLE: cannot connect/);
});

test("a broker process joins a bus with authorization with the nkey file named by MAGISTRAL_NATS_NKEY", async (t) => {
  const dataDir = tempDir(t);
  const nats = await startEmbeddedNats({ dataDir, embeddedPort: 0, nodeId: "sec2", auth: true });
  t.teardown(() => nats.stop());
  const seedFile = path.join(nats.auth!.credentialsDir, "broker.nk");

  await startBrokerProcess(t, {
    servers: nats.url,
    nodeId: "joined",
    dataDir: path.join(dataDir, "node"),
    env: { MAGISTRAL_NATS_NKEY: seedFile },
  });

  const health = await admin(["--json", "health"], { MAGISTRAL_DATA_DIR: dataDir });
  t.is(health.code, 0, health.stderr);
});
