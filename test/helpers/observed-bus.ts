import type { ExecutionContext } from "ava";
import type { RunningNatsServer } from "../../cluster/nats-server.ts";
import type { AdminClient } from "../../src/admin-client.ts";
import type { BrokerNode, BrokerOptions } from "../../src/broker.ts";
import type { AgencyClient } from "../../src/client.ts";
import type { ServiceDef } from "../../src/registry.ts";
import { consumerName, STREAM } from "../../src/subjects.ts";
import { startBus, waitFor } from "./bus.ts";

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

/**
 * The test bus of `startBus`, with `opts` (metrics port, journal archiving),
 * plus service registration and a wait for the journal and statistics.
 */
export async function startObservedBus(
  t: ExecutionContext,
  opts: Partial<BrokerOptions> = {},
): Promise<ObservedBus> {
  const bus = await startBus(t, opts);
  const { broker, admin } = bus;
  return {
    ...bus,
    connect: bus.agency,
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
