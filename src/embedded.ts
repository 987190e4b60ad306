import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { type RunningNatsServer, startNatsServer } from "../cluster/nats-server.ts";
import { type NodeConfig, runtimeFile } from "./config.ts";
import { type EmbeddedAuth, prepareEmbeddedAuth } from "./embedded-auth.ts";
import { componentLogger } from "./logger.ts";

/** What `<dataDir>/runtime.json` holds while an embedded bus runs. */
export interface RuntimeInfo {
  /** Client URLs of the embedded nats-server. */
  servers: string[];
  /** Process id of the node that owns the embedded server. */
  pid: number;
  /** Milliseconds since the epoch. */
  startedAt: number;
  /** The embedded nats-server's pid: for `auth reload`, and to stop it if its node was killed. */
  natsPid?: number;
  /** With authorization: the auth file and the logins. */
  authFile?: string;
  credentialsDir?: string;
}

/** A nats-server child process started for one node, with its runtime file. */
export interface EmbeddedNats {
  url: string;
  server: RunningNatsServer;
  /** Set when the server runs with authorization: the logins and the registry follower. */
  auth?: EmbeddedAuth;
  /** Stops the server and removes the runtime file. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Starts a single-node nats-server with JetStream, its store under
 * `<dataDir>/nats`, on `config.embeddedPort` (0: a free port), and writes
 * `<dataDir>/runtime.json` so the admin script can find it.
 */
export async function startEmbeddedNats(
  config: Pick<NodeConfig, "dataDir" | "embeddedPort" | "nodeId"> & { auth?: boolean },
): Promise<EmbeddedNats> {
  const log = componentLogger("embedded", { node: config.nodeId });
  await reapOrphan(config.dataDir, log);
  const configFile = path.join(config.dataDir, "magistral-embedded.conf");
  let child: RunningNatsServer["process"] | undefined;
  // With `auth`, only the broker, the operator and registered agencies may connect.
  const prepared = config.auth
    ? prepareEmbeddedAuth(config.dataDir, configFile, () => child)
    : undefined;
  const server = await startNatsServer({
    name: "magistral-embedded",
    port: config.embeddedPort,
    storeDir: path.join(config.dataDir, "nats"),
    configFile,
    extraConfig: prepared?.include,
    detached: true,
  });
  child = server.process;
  // In its own process group the server outlives a crash of this process
  // unless it is stopped here; an exit handler must be synchronous.
  // A SIGKILL of this process runs no handler and leaves the server running;
  // the next start finds it through runtime.json and stops it (reapOrphan).
  const killOnExit = () => server.process.kill("SIGTERM");
  process.once("exit", killOnExit);
  const file = runtimeFile(config.dataDir);
  const info: RuntimeInfo = {
    servers: [server.url],
    pid: process.pid,
    natsPid: child.pid,
    startedAt: Date.now(),
  };
  if (prepared) {
    Object.assign(info, {
      authFile: prepared.auth.authFile,
      credentialsDir: prepared.auth.credentialsDir,
    });
  }
  writeFileSync(file, `${JSON.stringify(info, null, 2)}\n`);
  log.info({ url: server.url, storeDir: path.join(config.dataDir, "nats") }, "nats-server started");

  let stopping: Promise<void> | undefined;
  const shutdown = async () => {
    removeRuntimeFile(file);
    await prepared?.auth.stop();
    await server.stop();
    process.off("exit", killOnExit);
    log.info("nats-server stopped");
  };
  return {
    url: server.url,
    server,
    auth: prepared?.auth,
    stop: () => {
      stopping ??= shutdown();
      return stopping;
    },
  };
}

/** Removes the runtime file if this process wrote it; another node's file stays. */
function removeRuntimeFile(file: string): void {
  const info = readRuntimeFile(file);
  if (info?.pid === process.pid) rmSync(file, { force: true });
}

/**
 * The runtime file of a running embedded bus under `dataDir`, or undefined
 * when there is none or the process that wrote it has exited.
 * LIMITATION: liveness is judged by the pid alone; a file left by a crash
 * whose pid was reused by another process is taken as live, and the admin
 * script then fails to connect instead of falling back to MAGISTRAL_NATS.
 */
/**
 * Stops a nats-server left running on this data dir by a node that was
 * killed, so two servers never share one JetStream store.
 */
async function reapOrphan(dataDir: string, log: ReturnType<typeof componentLogger>) {
  const info = readRuntimeFile(runtimeFile(dataDir));
  if (!info?.natsPid || isAlive(info.pid) || !isNatsServer(info.natsPid)) return;
  log.warn({ pid: info.natsPid }, "stopping the nats-server a killed node left running");
  process.kill(info.natsPid, "SIGTERM");
  const deadline = Date.now() + 10_000;
  while (isAlive(info.natsPid) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  if (isAlive(info.natsPid)) process.kill(info.natsPid, "SIGKILL");
}

/** Whether `pid` is a running nats-server (not a reused pid of something else). */
function isNatsServer(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("nats-server");
  } catch {
    return false;
  }
}

export function readRuntime(dataDir: string): RuntimeInfo | undefined {
  const info = readRuntimeFile(runtimeFile(dataDir));
  return info && isAlive(info.pid) ? info : undefined;
}

function readRuntimeFile(file: string): RuntimeInfo | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const info = JSON.parse(readFileSync(file, "utf8")) as Partial<RuntimeInfo>;
    const valid =
      Array.isArray(info.servers) && info.servers.length > 0 && typeof info.pid === "number";
    return valid ? (info as RuntimeInfo) : undefined;
  } catch {
    // A file cut short by a crash is treated as absent.
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
