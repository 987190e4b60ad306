import path from "node:path";
import { freePort } from "./nats-server.ts";
import { parseTopology, type Topology } from "./topology.ts";

/**
 * A topology of `natsNodes` NATS nodes on free ports of 127.0.0.1 and
 * `brokers` broker nodes, everything under `dataDir`: for tests and chaos
 * runs that must not collide with a cluster already running here.
 */
export async function localTopology(opts: {
  dataDir: string;
  name?: string;
  natsNodes?: number;
  brokers?: number;
}): Promise<Topology> {
  const count = opts.natsNodes ?? 3;
  const ports = await distinctFreePorts(count * 3);
  const nats = Array.from({ length: count }, (_, i) => ({
    name: `n${i + 1}`,
    host: "127.0.0.1",
    clientPort: ports[i * 3]!,
    clusterPort: ports[i * 3 + 1]!,
    monitorPort: ports[i * 3 + 2]!,
  }));
  const brokers = Array.from({ length: opts.brokers ?? 2 }, (_, i) => ({ id: `b${i + 1}` }));
  return parseTopology(
    { name: opts.name ?? "magistral", dataDir: path.resolve(opts.dataDir), nats, brokers },
    opts.dataDir,
  );
}

/** Free ports, none twice: the OS may hand a just-closed port out again. */
async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}
