import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ErrorCode, MagistralError } from "../src/errors.ts";
import { componentLogger, type Logger } from "../src/logger.ts";
import { agreedMetaLeader, natsNodeHealth, streamsBehindOn } from "./monitor.ts";
import { natsServerBinary } from "./nats-server.ts";
import { isRunning, logTail, sleep, spawnLogged, stopPid, waitForLogLine } from "./processes.ts";
import { configFile, type RenderOptions, renderNatsConfig } from "./render.ts";
import {
  type BrokerNodeSpec,
  clientUrls,
  findNode,
  type NatsNodeSpec,
  type Topology,
} from "./topology.ts";

/** One running node as the state file records it. */
export interface NodeProcess {
  pid: number;
  startedAt: number;
  logFile: string;
}

/** `<dataDir>/state.json`: what runs, so a later command can find and stop it. */
export interface ClusterState {
  /** The topology the nodes were started with (`up --brokers N` changes it). */
  topology: Topology;
  urls: string[];
  nats: Record<string, NodeProcess & { configFile: string }>;
  brokers: Record<string, NodeProcess>;
  updatedAt: number;
}

export interface LauncherOptions {
  /** Nodes outlive the process that started them (the admin script). Default true. */
  detached?: boolean;
  /** Rendered into every server's config; see RenderOptions. */
  render?: RenderOptions;
  /** Extra environment of the broker processes. */
  brokerEnv?: Record<string, string>;
  /** How long a node may take to become ready. Default 30 s. */
  readyTimeoutMs?: number;
  /**
   * Use the topology given even when a cluster from it already runs with
   * another shape (`up --brokers N`). Default: the running shape is kept.
   */
  reshape?: boolean;
  log?: Logger;
}

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const BROKER_SCRIPT = path.join(REPO_ROOT, "scripts", "start.ts");
/** What scripts/start.ts logs once its broker node serves. */
const BROKER_READY_LINE = "magistral is running";

/**
 * Starts and stops the nodes of a topology on this machine: every NATS
 * node as a nats-server child process with its rendered config, every
 * broker node as `scripts/start.ts`. Each operation reads and rewrites the
 * state file, so separate runs of the admin script can share a cluster.
 *
 * LIMITATION: without `render.authorization` (and `cluster up` passes none)
 * the servers accept any client that reaches them: fit for development and
 * tests on one machine only. The processes are known only by the pids in
 * the state file; a deleted state file leaves them running, to be stopped
 * by pid.
 */
export class ClusterLauncher {
  readonly topology: Topology;
  private readonly log: Logger;
  private readonly readyTimeoutMs: number;

  constructor(
    topology: Topology,
    private readonly opts: LauncherOptions = {},
  ) {
    // The cluster already running keeps the shape it was started with.
    this.topology = opts.reshape ? topology : (readState(topology)?.topology ?? topology);
    this.log = opts.log ?? componentLogger("cluster", { cluster: topology.name });
    this.readyTimeoutMs = opts.readyTimeoutMs ?? 30_000;
  }

  /**
   * Starts every node not yet running and stops broker nodes the topology
   * no longer has; resolves once JetStream has a meta leader and every
   * broker node serves.
   */
  async up(): Promise<ClusterState> {
    const state = this.state();
    state.topology = this.topology;
    for (const id of Object.keys(state.brokers)) {
      if (!this.topology.brokers.some((b) => b.id === id)) await this.stopIn(id, state);
    }
    for (const node of this.topology.nats) {
      if (!this.isNatsRunning(node.name, state)) await this.spawnNats(node, state);
    }
    await this.waitForMetaLeader();
    for (const broker of this.topology.brokers) {
      if (!this.isBrokerRunning(broker.id, state)) await this.startBrokerIn(broker, state);
    }
    this.save(state);
    return state;
  }

  /** Stops every broker node, then every NATS node, and removes the state file. */
  async down(): Promise<void> {
    const state = this.state();
    const stop = (name: string) => {
      const entry = state.nats[name] ?? state.brokers[name];
      return entry ? stopPid(entry.pid, "SIGTERM", this.marker(state, name)) : undefined;
    };
    await Promise.all(Object.keys(state.brokers).map(stop));
    await Promise.all(Object.keys(state.nats).map(stop));
    rmSync(stateFile(this.topology), { force: true });
    this.log.info("cluster stopped");
  }

  /** Starts one NATS or broker node by name; a NATS node is ready once it has caught up. */
  async start(name: string): Promise<void> {
    const node = this.node(name);
    const state = this.state();
    if (node.kind === "nats") {
      if (this.isNatsRunning(name, state)) return;
      await this.spawnNats(node.spec, state);
      await this.waitCaughtUp(node.spec);
    } else if (!this.isBrokerRunning(name, state)) {
      await this.startBrokerIn(node.spec, state);
    }
  }

  /** Stops one node: SIGTERM lets it shut down in order, SIGKILL crashes it. */
  async stop(name: string, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    this.node(name);
    await this.stopIn(name, this.state(), signal);
  }

  private async stopIn(name: string, state: ClusterState, signal: NodeJS.Signals = "SIGTERM") {
    const entry = state.nats[name] ?? state.brokers[name];
    if (entry) await stopPid(entry.pid, signal, this.marker(state, name));
    delete state.nats[name];
    delete state.brokers[name];
    this.save(state);
    this.log.info({ node: name, signal }, "node stopped");
  }

  async restart(name: string, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    await this.stop(name, signal);
    await this.start(name);
  }

  /** The state file's content, with entries of processes that have exited dropped. */
  state(): ClusterState {
    const saved = readState(this.topology);
    const state: ClusterState = saved ?? {
      topology: this.topology,
      urls: clientUrls(this.topology),
      nats: {},
      brokers: {},
      updatedAt: Date.now(),
    };
    for (const name of Object.keys(state.nats)) {
      if (!this.isNatsRunning(name, state)) delete state.nats[name];
    }
    for (const id of Object.keys(state.brokers)) {
      if (!this.isBrokerRunning(id, state)) delete state.brokers[id];
    }
    return state;
  }

  /** Client URLs of every NATS node. */
  urls(): string[] {
    return clientUrls(this.topology);
  }

  /** Waits until every running NATS node names the same JetStream meta leader. */
  async waitForMetaLeader(timeoutMs = this.readyTimeoutMs): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const leader = await agreedMetaLeader(this.topology.nats);
      if (leader) return leader;
      if (Date.now() > deadline) {
        throw new MagistralError(ErrorCode.UNAVAILABLE, "JetStream elected no meta leader");
      }
      await sleep(200);
    }
  }

  /**
   * Waits until a NATS node has caught up: it knows the meta leader and
   * every stream's leader counts its copy as current. /healthz is not used:
   * on nats-server 2.9 it can report an idle consumer as not current for
   * minutes after a restart, though nothing is missing.
   */
  async waitCaughtUp(node: NatsNodeSpec, timeoutMs = this.readyTimeoutMs): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let behind: string[] = [];
    for (;;) {
      const health = await natsNodeHealth(node);
      if (health.metaLeader) {
        behind = await streamsBehindOn(this.topology.nats, node.name).catch(() => ["?"]);
        if (behind.length === 0) return;
      }
      if (Date.now() > deadline) {
        const why = health.metaLeader ? `streams behind: ${behind.join(", ")}` : "no meta leader";
        throw new MagistralError(ErrorCode.UNAVAILABLE, `${node.name} not caught up: ${why}`);
      }
      await sleep(200);
    }
  }

  private async spawnNats(node: NatsNodeSpec, state: ClusterState): Promise<void> {
    const bin = natsServerBinary();
    if (!bin) throw new MagistralError(ErrorCode.UNAVAILABLE, "nats-server binary not found");
    mkdirSync(node.storeDir, { recursive: true });
    const file = configFile(this.topology, node);
    writeFileSync(file, renderNatsConfig(this.topology, node.name, this.opts.render));
    const logFile = this.logFile(node.name);
    const { child } = spawnLogged({
      command: bin,
      args: ["-c", file],
      logFile,
      detached: this.opts.detached ?? true,
    });
    await this.waitMonitor(node, child.pid!, logFile);
    state.nats[node.name] = { pid: child.pid!, startedAt: Date.now(), logFile, configFile: file };
    this.save(state);
    this.log.info({ node: node.name, pid: child.pid }, "nats-server started");
  }

  /** The monitoring port answers once the server has read its config and listens. */
  private async waitMonitor(node: NatsNodeSpec, pid: number, logFile: string): Promise<void> {
    const deadline = Date.now() + this.readyTimeoutMs;
    while (!(await natsNodeHealth(node, 500)).up) {
      if (!isRunning(pid) || Date.now() > deadline) {
        if (isRunning(pid)) await stopPid(pid, "SIGKILL");
        throw new MagistralError(
          ErrorCode.UNAVAILABLE,
          `nats-server ${node.name} did not start: ${logTail(logFile, 1_500)}`,
        );
      }
      await sleep(100);
    }
  }

  private async startBrokerIn(broker: BrokerNodeSpec, state: ClusterState): Promise<void> {
    mkdirSync(broker.dataDir, { recursive: true });
    const logFile = this.logFile(broker.id);
    const { child, logOffset } = spawnLogged({
      command: process.execPath,
      args: ["--import", "tsx", BROKER_SCRIPT],
      cwd: REPO_ROOT,
      env: this.brokerEnv(broker),
      logFile,
      detached: this.opts.detached ?? true,
    });
    const pid = child.pid!;
    try {
      await waitForLogLine(logFile, logOffset, BROKER_READY_LINE, pid, this.readyTimeoutMs);
    } catch (err) {
      await stopPid(pid, "SIGKILL");
      throw err;
    }
    state.brokers[broker.id] = { pid, startedAt: Date.now(), logFile };
    this.save(state);
    this.log.info({ node: broker.id, pid }, "broker node started");
  }

  private brokerEnv(broker: BrokerNodeSpec): NodeJS.ProcessEnv {
    return {
      ...process.env,
      MAGISTRAL_NATS: this.urls().join(","),
      MAGISTRAL_NODE_ID: broker.id,
      MAGISTRAL_DATA_DIR: broker.dataDir,
      MAGISTRAL_REPLICAS: String(this.topology.replicas),
      MAGISTRAL_LOG_LEVEL: process.env.MAGISTRAL_CLUSTER_LOG_LEVEL ?? "info",
      ...this.opts.brokerEnv,
    };
  }

  private isNatsRunning(name: string, state: ClusterState): boolean {
    return isRunning(state.nats[name]?.pid, this.marker(state, name));
  }

  private isBrokerRunning(id: string, state: ClusterState): boolean {
    return isRunning(state.brokers[id]?.pid, this.marker(state, id));
  }

  /** What identifies a node's process: its config file, or its node id in the environment. */
  private marker(state: ClusterState, name: string): string {
    return state.nats[name]?.configFile ?? `MAGISTRAL_NODE_ID=${name}`;
  }

  private node(name: string) {
    const node = findNode(this.topology, name);
    if (!node) throw new MagistralError(ErrorCode.NOT_FOUND, `no node ${name} in the topology`);
    return node;
  }

  private logFile(name: string): string {
    return path.join(this.topology.dataDir, "logs", `${name}.log`);
  }

  private save(state: ClusterState): void {
    state.updatedAt = Date.now();
    mkdirSync(this.topology.dataDir, { recursive: true });
    const file = stateFile(this.topology);
    // Written whole and renamed, so a reader never sees half a file.
    writeFileSync(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
    renameSync(`${file}.tmp`, file);
  }
}

export function stateFile(topology: Pick<Topology, "dataDir">): string {
  return path.join(topology.dataDir, "state.json");
}

/** The state file of a cluster started from this topology, or undefined. */
export function readState(topology: Pick<Topology, "dataDir">): ClusterState | undefined {
  const file = stateFile(topology);
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, "utf8")) as ClusterState;
  } catch {
    return undefined;
  }
}
