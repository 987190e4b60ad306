// Three nats-server processes routed into one JetStream cluster on
// 127.0.0.1, for measuring the bus with three replicas.
import path from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { freePort, type RunningNatsServer, startNatsServer } from "../../cluster/nats-server.ts";
import { killOnExit } from "./broker.ts";

export interface BenchCluster {
  servers: RunningNatsServer[];
  urls: string[];
  stop(): Promise<void>;
}

const NODES = 3;

export async function startCluster(dir: string): Promise<BenchCluster> {
  const routePorts: number[] = [];
  for (let i = 0; i < NODES; i++) routePorts.push(await freePort());
  const routes = routePorts.map((p) => `nats-route://127.0.0.1:${p}`).join(", ");
  const servers = await Promise.all(
    routePorts.map((routePort, i) =>
      startNatsServer({
        name: `bench-n${i + 1}`,
        storeDir: path.join(dir, `n${i + 1}`, "js"),
        extraConfig: [
          "cluster {",
          "  name: bench",
          `  listen: 127.0.0.1:${routePort}`,
          `  routes: [${routes}]`,
          "}",
        ].join("\n"),
      }),
    ),
  );
  for (const s of servers) killOnExit(s.process);
  await jetStreamReady(servers.map((s) => s.url));
  return {
    servers,
    urls: servers.map((s) => s.url),
    async stop() {
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}

/** Waits until the cluster has a JetStream meta leader and answers account info. */
async function jetStreamReady(urls: string[], timeoutMs = 30_000): Promise<void> {
  const nc = await connect({ servers: urls });
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const jsm = await jetstreamManager(nc, { timeout: 2_000 });
        await jsm.getAccountInfo();
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  } finally {
    await nc.close();
  }
}
