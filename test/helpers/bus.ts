import path from "node:path";
import type { ExecutionContext } from "ava";
import type { RunningNatsServer } from "../../cluster/nats-server.ts";
import { AdminClient } from "../../src/admin-client.ts";
import { BrokerNode, type BrokerOptions } from "../../src/broker.ts";
import { AgencyClient } from "../../src/client.ts";
import { rootLogger } from "../../src/logger.ts";
import { natsServer, tempDir } from "./nats.ts";

export interface TestBus {
  dir: string;
  server: RunningNatsServer;
  broker: BrokerNode;
  admin: AdminClient;
  agency(id: string): Promise<AgencyClient>;
  /** Registers an agency and connects as it. */
  addAgency(id: string, roles?: string[]): Promise<AgencyClient>;
}

let nodeSeq = 0;

/** A nats-server, one broker node and an admin connection, all closed at teardown. */
export async function startBus(
  t: ExecutionContext,
  options: Partial<BrokerOptions> = {},
  setup: { beforeBroker?: (server: RunningNatsServer) => Promise<void> } = {},
): Promise<TestBus> {
  const dir = tempDir(t);
  const server = await natsServer(t, dir);
  await setup.beforeBroker?.(server);
  const broker = await startBroker(t, server, dir, options);
  const admin = await AdminClient.connect({ servers: server.url });
  t.teardown(() => admin.close());
  const agency = async (id: string) => {
    const client = await AgencyClient.connect({ agency: id, nats: { servers: server.url } });
    t.teardown(() => client.close());
    return client;
  };
  return {
    dir,
    server,
    broker,
    admin,
    agency,
    async addAgency(id, roles = ["consumer", "provider"]) {
      await admin.call("agency.put", { id, name: id, roles });
      await waitFor(() => broker.view.agency(id) !== undefined);
      return agency(id);
    },
  };
}

export async function startBroker(
  t: ExecutionContext,
  server: RunningNatsServer,
  dir: string,
  options: Partial<BrokerOptions> = {},
) {
  const broker = await BrokerNode.start({
    nodeId: `node${++nodeSeq}`,
    nats: { servers: server.url },
    dataDir: dir,
    log: rootLogger.child({ test: path.basename(dir) }),
    ...options,
  });
  t.teardown(() => broker.close());
  return broker;
}

/** Polls `check` until it holds or `timeoutMs` passes. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 25));
  }
}
