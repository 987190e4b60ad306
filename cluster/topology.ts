import { readFileSync } from "node:fs";
import path from "node:path";
import { ErrorCode, MagistralError } from "../src/errors.ts";
import { assertToken } from "../src/ids.ts";

/** One nats-server of the cluster. */
export interface NatsNodeSpec {
  /** `server_name`; unique in the cluster and a subject token. */
  name: string;
  /** Address clients and the other servers use to reach this one. */
  host: string;
  /** Address the server binds to; defaults to `host` (use 0.0.0.0 behind NAT). */
  bind?: string;
  clientPort: number;
  /** Port of the route connections between the servers. */
  clusterPort: number;
  /** HTTP monitoring port (/varz, /jsz, /healthz). */
  monitorPort: number;
  /** JetStream store (the server adds `jetstream/`); relative to the topology's data dir. */
  storeDir: string;
}

/** One broker node (`scripts/start.ts`) of the cluster. */
export interface BrokerNodeSpec {
  /** Node id; unique in the cluster and a subject token. */
  id: string;
  /** The node's local state (journal); relative paths are under the topology's data dir. */
  dataDir: string;
}

/** What the cluster is made of: read from a JSON file, every path resolved. */
export interface Topology {
  /** Name of the NATS cluster (`cluster { name }`). */
  name: string;
  /** Root of configs, logs, stores and the state file; relative to the current directory. */
  dataDir: string;
  /** Replicas of every stream and bucket; 3 in a three-node cluster. */
  replicas: number;
  nats: NatsNodeSpec[];
  brokers: BrokerNodeSpec[];
}

const DEFAULT_NAME = "magistral";
const DEFAULT_DATA_DIR = "data/cluster";

/**
 * Reads and checks a topology file.
 * @throws MagistralError BAD_REQUEST naming the first field that is wrong
 */
export function loadTopology(file: string, cwd = process.cwd()): Topology {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new MagistralError(ErrorCode.BAD_REQUEST, `cannot read topology ${file}`, { cause: err });
  }
  return parseTopology(raw, cwd);
}

/** Checks a parsed topology and resolves its paths against `cwd`. */
export function parseTopology(raw: unknown, cwd = process.cwd()): Topology {
  const input = asObject(raw, "topology");
  const dataDir = path.resolve(cwd, optionalString(input.dataDir, "dataDir") ?? DEFAULT_DATA_DIR);
  const nats = asArray(input.nats, "nats").map((n, i) => natsNode(n, i, dataDir));
  if (nats.length === 0) bad("nats: at least one node");
  const brokers = asArray(input.brokers ?? [], "brokers").map((b, i) => brokerNode(b, i, dataDir));
  const topology: Topology = {
    name: assertToken(input.name ?? DEFAULT_NAME, "cluster name"),
    dataDir,
    replicas: positiveInt(input.replicas ?? Math.min(3, nats.length), "replicas"),
    nats,
    brokers,
  };
  checkTopology(topology);
  return topology;
}

/** Replaces the broker nodes with `count` nodes named b1..bN. */
export function withBrokers(topology: Topology, count: number): Topology {
  const brokers = Array.from({ length: count }, (_, i) => ({
    id: `b${i + 1}`,
    dataDir: path.join(topology.dataDir, `b${i + 1}`),
  }));
  return { ...topology, brokers };
}

/** Client URLs of every NATS node, in topology order. */
export function clientUrls(topology: Topology): string[] {
  return topology.nats.map((n) => `nats://${n.host}:${n.clientPort}`);
}

export function monitorUrl(node: NatsNodeSpec): string {
  return `http://${node.host}:${node.monitorPort}`;
}

/** The NATS node or broker node named `name`, or undefined. */
export function findNode(
  topology: Topology,
  name: string,
): { kind: "nats"; spec: NatsNodeSpec } | { kind: "broker"; spec: BrokerNodeSpec } | undefined {
  const nats = topology.nats.find((n) => n.name === name);
  if (nats) return { kind: "nats", spec: nats };
  const broker = topology.brokers.find((b) => b.id === name);
  return broker ? { kind: "broker", spec: broker } : undefined;
}

function natsNode(raw: unknown, i: number, dataDir: string): NatsNodeSpec {
  const where = `nats[${i}]`;
  const input = asObject(raw, where);
  const name = assertToken(input.name, `${where}.name`);
  const host = optionalString(input.host, `${where}.host`) ?? "127.0.0.1";
  return {
    name,
    host,
    bind: optionalString(input.bind, `${where}.bind`),
    clientPort: port(input.clientPort, `${where}.clientPort`),
    clusterPort: port(input.clusterPort, `${where}.clusterPort`),
    monitorPort: port(input.monitorPort, `${where}.monitorPort`),
    storeDir: path.resolve(dataDir, optionalString(input.storeDir, `${where}.storeDir`) ?? name),
  };
}

function brokerNode(raw: unknown, i: number, dataDir: string): BrokerNodeSpec {
  const where = `brokers[${i}]`;
  const input = asObject(raw, where);
  const id = assertToken(input.id, `${where}.id`);
  const dir = optionalString(input.dataDir, `${where}.dataDir`) ?? id;
  return { id, dataDir: path.resolve(dataDir, dir) };
}

function checkTopology(topology: Topology): void {
  if (topology.replicas > topology.nats.length) {
    bad(`replicas: ${topology.replicas} is more than the ${topology.nats.length} NATS nodes`);
  }
  const names = [...topology.nats.map((n) => n.name), ...topology.brokers.map((b) => b.id)];
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) bad(`node name ${dup} is used twice`);
  const endpoints = topology.nats.flatMap((n) =>
    [n.clientPort, n.clusterPort, n.monitorPort].map((p) => `${n.host}:${p}`),
  );
  const clash = endpoints.find((e, i) => endpoints.indexOf(e) !== i);
  if (clash) bad(`address ${clash} is used twice`);
}

function bad(message: string): never {
  throw new MagistralError(ErrorCode.BAD_REQUEST, `topology: ${message}`);
}

function asObject(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    bad(`${where} must be an object`);
  }
  return value as Record<string, unknown>;
}

function asArray(value: unknown, where: string): unknown[] {
  if (!Array.isArray(value)) bad(`${where} must be an array`);
  return value;
}

function optionalString(value: unknown, where: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value === "") bad(`${where} must be a non-empty string`);
  return value;
}

function port(value: unknown, where: string): number {
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > 65535) {
    bad(`${where} must be a port number`);
  }
  return value as number;
}

function positiveInt(value: unknown, where: string): number {
  if (!Number.isInteger(value) || (value as number) < 1) bad(`${where} must be a positive integer`);
  return value as number;
}
