import { existsSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/** Settings of one broker node. */
export interface NodeConfig {
  /** Unique name of this broker node; a subject token. */
  nodeId: string;
  /** NATS servers to join; empty means start an embedded nats-server. */
  servers: string[];
  /** Root of local state: embedded NATS store, RocksDB journal. */
  dataDir: string;
  /** Stream and bucket replicas: 1 alone, 3 in a cluster. */
  replicas: number;
  /** Client port of the embedded nats-server; 0 picks a free one. */
  embeddedPort: number;
  /** Credentials for the broker's own NATS connection. */
  user?: string;
  pass?: string;
  /** Or a file holding the broker's nkey seed (`SU...`), e.g. `<dataDir>/credentials/broker.nk`. */
  nkeySeedFile?: string;
  /** Heartbeat period of the node in broker membership. */
  heartbeatMs?: number;
  /** Operator alerts are also POSTed to this URL as JSON. */
  alertWebhookUrl?: string;
  /** Port of GET /metrics (Prometheus); 0 picks a free one; absent serves none. */
  metricsPort?: number;
  /** Journal records older than this are archived to files and leave RocksDB. */
  journalArchiveAfterMs?: number;
  /**
   * Whether an embedded nats-server requires logins and limits each agency
   * to its own subjects (default true; MAGISTRAL_AUTH=off turns it off).
   */
  auth: boolean;
}

const DEFAULT_CONFIG_FILE = "magistral.config.json";

/**
 * Reads settings from, in increasing precedence: defaults, the JSON file
 * named by MAGISTRAL_CONFIG (or ./magistral.config.json), and environment
 * variables MAGISTRAL_NODE_ID, MAGISTRAL_NATS (comma-separated URLs),
 * MAGISTRAL_DATA_DIR, MAGISTRAL_REPLICAS, MAGISTRAL_NATS_PORT.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): NodeConfig {
  const file = env.MAGISTRAL_CONFIG ?? DEFAULT_CONFIG_FILE;
  const fromFile: Partial<NodeConfig> = existsSync(file)
    ? JSON.parse(readFileSync(file, "utf8"))
    : {};
  const config: NodeConfig = {
    nodeId: defaultNodeId(),
    servers: [],
    dataDir: path.resolve("data"),
    replicas: 1,
    embeddedPort: 0,
    auth: true,
    ...fromFile,
  };
  if (env.MAGISTRAL_NODE_ID) config.nodeId = env.MAGISTRAL_NODE_ID;
  if (env.MAGISTRAL_NATS) config.servers = env.MAGISTRAL_NATS.split(",").filter(Boolean);
  if (env.MAGISTRAL_DATA_DIR) config.dataDir = path.resolve(env.MAGISTRAL_DATA_DIR);
  if (env.MAGISTRAL_REPLICAS) config.replicas = Number(env.MAGISTRAL_REPLICAS);
  if (env.MAGISTRAL_NATS_PORT) config.embeddedPort = Number(env.MAGISTRAL_NATS_PORT);
  if (env.MAGISTRAL_NATS_USER) config.user = env.MAGISTRAL_NATS_USER;
  if (env.MAGISTRAL_NATS_PASS) config.pass = env.MAGISTRAL_NATS_PASS;
  if (env.MAGISTRAL_NATS_NKEY) config.nkeySeedFile = path.resolve(env.MAGISTRAL_NATS_NKEY);
  if (env.MAGISTRAL_HEARTBEAT_MS) config.heartbeatMs = Number(env.MAGISTRAL_HEARTBEAT_MS);
  if (env.MAGISTRAL_ALERT_WEBHOOK) config.alertWebhookUrl = env.MAGISTRAL_ALERT_WEBHOOK;
  if (env.MAGISTRAL_METRICS_PORT) config.metricsPort = Number(env.MAGISTRAL_METRICS_PORT);
  if (env.MAGISTRAL_JOURNAL_ARCHIVE_AFTER_MS) {
    config.journalArchiveAfterMs = Number(env.MAGISTRAL_JOURNAL_ARCHIVE_AFTER_MS);
  }
  if (env.MAGISTRAL_AUTH) config.auth = env.MAGISTRAL_AUTH !== "off";
  return config;
}

/**
 * The host name: stable across restarts, so a restarted node finds its own
 * journal and consumers again. Two nodes on one host need MAGISTRAL_NODE_ID.
 */
function defaultNodeId(): string {
  return (
    os
      .hostname()
      .toLowerCase()
      .replace(/[^a-z0-9_-]/g, "-")
      .slice(0, 64) || "node"
  );
}

/** Where a running embedded bus writes how to reach it, for the admin script. */
export function runtimeFile(dataDir: string): string {
  return path.join(dataDir, "runtime.json");
}
