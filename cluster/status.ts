// What `magistral cluster status` shows: every NATS node from its own
// monitoring port, the placement of every stream and bucket, the broker
// nodes from their heartbeats with the lanes each serves, and queue depths.
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { LaneHealth } from "../actors/lane.ts";
import { AdminClient } from "../src/admin-client.ts";
import { type BrokerMember, listMembers } from "../src/membership.ts";
import type { QueueDepth } from "../src/queue-depth.ts";
import { BUCKET } from "../src/subjects.ts";
import type { ClusterState } from "./launcher.ts";
import { type StreamPlacement, streamPlacements } from "./leaders.ts";
import { type NatsNodeHealth, natsNodeHealth } from "./monitor.ts";
import { isRunning } from "./processes.ts";
import { clientUrls, type Topology } from "./topology.ts";

/** One broker node: its heartbeat, its lanes, and its process if started on this machine. */
export interface BrokerStatus extends Partial<BrokerMember> {
  node: string;
  alive: boolean;
  /** Process id recorded in this machine's state file, if the launcher started it. */
  localPid?: number;
  /** Whether that process still runs; undefined when not started on this machine. */
  localRunning?: boolean;
  lanes: Pick<LaneHealth, "service" | "provider" | "state" | "circuit" | "inFlight">[];
}

export interface ClusterStatus {
  name: string;
  nats: (NatsNodeHealth & { url: string; localPid?: number })[];
  /** The meta leader the answering nodes agree on; undefined while there is none. */
  metaLeader?: string;
  streams: StreamPlacement[];
  brokers: BrokerStatus[];
  queues: QueueDepth[];
  /** What could not be read, in words: the status is partial. */
  problems: string[];
}

export interface StatusOptions {
  user?: string;
  pass?: string;
  timeoutMs?: number;
  /** Heartbeat period the broker nodes use; liveness is judged against it. */
  heartbeatMs?: number;
}

const DEFAULT_HEARTBEAT_MS = 5_000;

/** Gathers the cluster's status; parts that cannot be read are listed in `problems`. */
export async function clusterStatus(
  topology: Topology,
  state: ClusterState | undefined,
  opts: StatusOptions = {},
): Promise<ClusterStatus> {
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const nats = await Promise.all(
    topology.nats.map(async (node) => ({
      ...(await natsNodeHealth(node, Math.min(timeoutMs, 2_000))),
      url: `nats://${node.host}:${node.clientPort}`,
      localPid: running(state?.nats[node.name]?.pid),
    })),
  );
  const status: ClusterStatus = {
    name: topology.name,
    nats,
    metaLeader: agreed(nats),
    streams: [],
    brokers: [],
    queues: [],
    problems: [],
  };
  if (!nats.some((n) => n.up)) {
    status.problems.push("no NATS node answers on its monitoring port");
    status.brokers = localBrokers(state);
    return status;
  }
  await busParts(topology, state, status, { ...opts, timeoutMs });
  return status;
}

/** Streams, brokers and queues, read over one NATS connection. */
async function busParts(
  topology: Topology,
  state: ClusterState | undefined,
  status: ClusterStatus,
  opts: StatusOptions & { timeoutMs: number },
): Promise<void> {
  let admin: AdminClient;
  try {
    admin = await AdminClient.connect({
      servers: clientUrls(topology),
      user: opts.user,
      pass: opts.pass,
      maxReconnectAttempts: 0,
      timeout: opts.timeoutMs,
    });
  } catch (err) {
    status.problems.push(`cannot connect: ${(err as Error).message}`);
    status.brokers = localBrokers(state);
    return;
  }
  try {
    const jsm = await jetstreamManager(admin.nc, { timeout: opts.timeoutMs, checkAPI: false });
    status.streams = await streamPlacements(jsm).catch((err) => {
      status.problems.push(`streams not listed: ${(err as Error).message}`);
      return [];
    });
    status.brokers = await brokerStatuses(admin, state, status, opts);
    status.queues = await admin
      .call<QueueDepth[]>("stats.queues", {}, opts.timeoutMs)
      .then((q) => q.sort((a, b) => a.service.localeCompare(b.service)))
      .catch(() => []);
  } finally {
    await admin.close();
  }
}

/**
 * Members from a broker's `broker.list`; when no broker answers, from the
 * brokers bucket directly, so a cluster without live brokers still shows
 * who was there.
 */
async function brokerStatuses(
  admin: AdminClient,
  state: ClusterState | undefined,
  status: ClusterStatus,
  opts: StatusOptions & { timeoutMs: number },
): Promise<BrokerStatus[]> {
  const heartbeatMs = opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  const members = await admin
    .call<BrokerMember[]>("broker.list", {}, opts.timeoutMs)
    .catch(() => readMembers(admin, heartbeatMs))
    .catch((err) => {
      status.problems.push(`broker membership not read: ${(err as Error).message}`);
      return [] as BrokerMember[];
    });
  const lanes = await admin
    .call<LaneHealth[]>("service.health", {}, opts.timeoutMs)
    .catch(() => [] as LaneHealth[]);
  const byNode = new Map<string, BrokerStatus>();
  for (const m of members) byNode.set(m.node, { ...m, lanes: [] });
  for (const [id, proc] of Object.entries(state?.brokers ?? {})) {
    const known = byNode.get(id) ?? { node: id, alive: false, lanes: [] };
    byNode.set(id, { ...known, localPid: proc.pid, localRunning: isRunning(proc.pid) });
  }
  for (const l of lanes) {
    const { service, provider, state: laneState, circuit, inFlight } = l;
    byNode.get(l.node)?.lanes.push({ service, provider, state: laneState, circuit, inFlight });
  }
  return [...byNode.values()].sort((a, b) => a.node.localeCompare(b.node));
}

async function readMembers(admin: AdminClient, heartbeatMs: number): Promise<BrokerMember[]> {
  const kvm = new Kvm(admin.nc);
  return listMembers(await kvm.open(BUCKET.brokers), heartbeatMs);
}

function localBrokers(state: ClusterState | undefined): BrokerStatus[] {
  return Object.entries(state?.brokers ?? {}).map(([node, proc]) => ({
    node,
    alive: false,
    localPid: proc.pid,
    localRunning: isRunning(proc.pid),
    lanes: [],
  }));
}

function running(pid: number | undefined): number | undefined {
  return pid !== undefined && isRunning(pid) ? pid : undefined;
}

function agreed(nats: NatsNodeHealth[]): string | undefined {
  const up = nats.filter((n) => n.up);
  const leader = up[0]?.metaLeader;
  return leader && up.every((n) => n.metaLeader === leader) ? leader : undefined;
}
