// `npm start`: one broker node for real use. With no servers configured it
// starts an embedded nats-server under <dataDir>/nats; otherwise it joins the
// configured NATS servers. SIGINT or SIGTERM stops it cleanly.
import { BrokerNode } from "../src/broker.ts";
import { loadConfig, type NodeConfig } from "../src/config.ts";
import { nkeyFileLogin } from "../src/credentials.ts";
import { type EmbeddedNats, startEmbeddedNats } from "../src/embedded.ts";
import { componentLogger } from "../src/logger.ts";

const log = componentLogger("start");

async function main(): Promise<void> {
  const config = loadConfig();
  const embedded = config.servers.length === 0 ? await startEmbeddedNats(config) : undefined;
  const servers = embedded ? [embedded.url] : config.servers;

  let broker: BrokerNode;
  try {
    broker = await BrokerNode.start(brokerOptions(config, servers, embedded));
    // The embedded server's logins follow the registry from now on.
    await embedded?.auth?.follow(broker.bus, log);
  } catch (err) {
    await embedded?.stop();
    throw err;
  }

  let stopping: Promise<void> | undefined;
  const stop = (reason: string, exitCode: number) => {
    stopping ??= shutdown(broker, embedded, reason).then(
      () => process.exit(exitCode),
      (err) => {
        log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.once("SIGINT", () => stop("SIGINT", 0));
  process.once("SIGTERM", () => stop("SIGTERM", 0));
  embedded?.server.process.once("exit", (code, signal) => {
    if (stopping) return;
    log.error({ code, signal }, "embedded nats-server exited");
    stop("nats-server exited", 1);
  });
  log.info({ node: config.nodeId, servers, dataDir: config.dataDir }, "magistral is running");
}

function brokerOptions(config: NodeConfig, servers: string[], embedded?: EmbeddedNats) {
  const login =
    embedded?.auth?.broker ??
    (config.nkeySeedFile
      ? nkeyFileLogin(config.nkeySeedFile)
      : { user: config.user, pass: config.pass });
  return {
    nodeId: config.nodeId,
    dataDir: config.dataDir,
    replicas: config.replicas,
    heartbeatMs: config.heartbeatMs,
    alertWebhookUrl: config.alertWebhookUrl,
    metricsPort: config.metricsPort,
    journalArchiveAfterMs: config.journalArchiveAfterMs,
    nats: {
      servers,
      ...login,
      maxReconnectAttempts: -1,
    },
  };
}

async function shutdown(broker: BrokerNode, embedded: EmbeddedNats | undefined, reason: string) {
  log.info({ reason }, "stopping");
  await broker.close();
  await embedded?.stop();
}

main().catch((err) => {
  log.fatal({ err }, "magistral did not start");
  process.exitCode = 1;
});
