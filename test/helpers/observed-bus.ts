import path from "node:path";
import type { ExecutionContext } from "ava";
import type { RunningNatsServer } from "../../cluster/nats-server.ts";
import { AdminClient } from "../../src/admin-client.ts";
import { BrokerNode, type BrokerOptions } from "../../src/broker.ts";
import { AgencyClient } from "../../src/client.ts";
import { rootLogger } from "../../src/logger.ts";
import type { ServiceDef } from "../../src/registry.ts";
import { consumerName, STREAM } from "../../src/subjects.ts";
import { waitFor } from "./bus.ts";
import { natsServer, tempDir } from "./nats.ts";

export interface ObservedBus {
  dir: string;
  server: RunningNatsServer;
  broker: BrokerNode;
  admin: AdminClient;
  connect(agency: string): Promise<AgencyClient>;
  addAgency(id: string, roles?: string[]): Promise<AgencyClient>;
  /** Registers a service; fields not given take the registry's defaults. */
  addService(service: ServiceInput): Promise<void>;
  /** Waits until this node's journal and statistics hold every event published so far. */
  settled(): Promise<void>;
}

export type ServiceInput = { id: string; owner: string } & Partial<
  Omit<ServiceDef, "retry" | "circuit">
> &
  Record<string, unknown>;

let nodeSeq = 0;

/**
 * A nats-server and one broker node started with `opts` (metrics port,
 * journal archiving), an admin connection, and agency helpers.
 */
export async function startObservedBus(
  t: ExecutionContext,
  opts: Partial<BrokerOptions> = {},
): Promise<ObservedBus> {
  const dir = tempDir(t);
  const server = await natsServer(t, dir);
  const broker = await BrokerNode.start({
    nodeId: `obs${++nodeSeq}`,
    nats: { servers: server.url },
    dataDir: dir,
    log: rootLogger.child({ test: path.basename(dir) }),
    ...opts,
  });
  t.teardown(() => broker.close());
  const admin = await AdminClient.connect({ servers: server.url });
  t.teardown(() => admin.close());

  const connect = async (agency: string) => {
    const client = await AgencyClient.connect({ agency, nats: { servers: server.url } });
    t.teardown(() => client.close());
    return client;
  };
  return {
    dir,
    server,
    broker,
    admin,
    connect,
    async addAgency(id, roles = ["consumer", "provider"]) {
      await admin.call("agency.put", { id, name: id, roles });
      await waitFor(() => broker.view.agency(id) !== undefined);
      return connect(id);
    },
    async addService(service) {
      await admin.call("service.put", { service });
      await waitFor(() => broker.view.get(service.id)?.updatedAt !== undefined);
    },
    settled: () => settled(broker),
  };
}

async function settled(broker: BrokerNode): Promise<void> {
  await broker.flushEvents();
  const { jsm } = broker.bus;
  await waitFor(async () => {
    const names = [consumerName.journal(broker.nodeId), consumerName.stats(broker.nodeId)];
    const infos = await Promise.all(names.map((n) => jsm.consumers.info(STREAM.events, n)));
    return infos.every((i) => i.num_pending === 0 && i.num_ack_pending === 0);
  }, 15_000);
}
