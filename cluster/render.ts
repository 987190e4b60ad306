import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ErrorCode, MagistralError } from "../src/errors.ts";
import type { NatsNodeSpec, Topology } from "./topology.ts";

/** What goes into one server's config besides the topology. */
export interface RenderOptions {
  /**
   * An `authorization { ... }` block, included as is: the users and
   * permissions of the registered agencies. Omitted, the servers accept
   * any client.
   */
  authorization?: string;
  /** Largest message in bytes; the bus's envelopes must fit. */
  maxPayloadBytes?: number;
}

const DEFAULT_MAX_PAYLOAD_BYTES = 1_048_576;

/**
 * The nats-server config of one node of the cluster: its name, client,
 * route and monitoring listeners, JetStream store, and routes to every
 * other node.
 */
export function renderNatsConfig(
  topology: Topology,
  nodeName: string,
  opts: RenderOptions = {},
): string {
  const node = topology.nats.find((n) => n.name === nodeName);
  if (!node) throw new MagistralError(ErrorCode.NOT_FOUND, `no NATS node ${nodeName}`);
  const bind = node.bind ?? node.host;
  const routes = topology.nats
    .filter((n) => n.name !== node.name)
    .map((n) => `    ${q(`nats-route://${n.host}:${n.clusterPort}`)}`);
  const lines = [
    `# Rendered by magistral for node ${node.name} of cluster ${topology.name}.`,
    `server_name: ${q(node.name)}`,
    `listen: ${q(`${bind}:${node.clientPort}`)}`,
    `http: ${q(`${bind}:${node.monitorPort}`)}`,
    `max_payload: ${opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES}`,
    "",
    "jetstream {",
    `  store_dir: ${q(node.storeDir)}`,
    "}",
    "",
    "cluster {",
    `  name: ${q(topology.name)}`,
    `  listen: ${q(`${bind}:${node.clusterPort}`)}`,
    "  routes: [",
    ...routes,
    "  ]",
    "}",
  ];
  if (opts.authorization) lines.push("", opts.authorization.trimEnd());
  return `${lines.join("\n")}\n`;
}

/** Where the config of `node` is written: `<dataDir>/<name>.conf`. */
export function configFile(topology: Topology, node: NatsNodeSpec): string {
  return path.join(topology.dataDir, `${node.name}.conf`);
}

/** Renders and writes every node's config; returns the files by node name. */
export function writeNatsConfigs(
  topology: Topology,
  opts: RenderOptions = {},
): Record<string, string> {
  mkdirSync(topology.dataDir, { recursive: true });
  const files: Record<string, string> = {};
  for (const node of topology.nats) {
    const file = configFile(topology, node);
    writeFileSync(file, renderNatsConfig(topology, node.name, opts));
    files[node.name] = file;
  }
  return files;
}

/** A quoted config string; JSON escaping is valid in the nats-server config syntax. */
function q(value: string): string {
  return JSON.stringify(value);
}
