import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";

/** One nats-server process to start: JetStream on, store under `storeDir`. */
export interface NatsServerSpec {
  name: string;
  host?: string;
  /** Client port; 0 picks a free one. */
  port?: number;
  storeDir: string;
  /** Config text appended as is (cluster block, authorization). */
  extraConfig?: string;
  /** Where the rendered config is written; defaults to `<storeDir>/../<name>.conf`. */
  configFile?: string;
  /**
   * Runs the server in its own process group, so a Ctrl-C meant for the
   * parent does not stop it before the parent has shut down in order.
   */
  detached?: boolean;
}

export interface RunningNatsServer {
  name: string;
  url: string;
  port: number;
  configFile: string;
  process: ChildProcess;
  /** Sends SIGTERM and waits for exit. Safe to call twice. */
  stop(): Promise<void>;
  /** Sends SIGKILL and waits for exit. */
  kill(): Promise<void>;
}

export function natsServerBinary(): string | undefined {
  const fromEnv = process.env.NATS_SERVER_BIN;
  if (fromEnv) return fromEnv;
  for (const candidate of ["nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server"]) {
    const probe = spawnSync(candidate, ["--version"], { stdio: "ignore" });
    if (probe.status === 0) return candidate;
  }
  return undefined;
}

export async function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, host, () => {
      const address = srv.address();
      srv.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

export function renderServerConfig(spec: NatsServerSpec & { port: number }): string {
  return [
    `server_name: ${JSON.stringify(spec.name)}`,
    `host: ${JSON.stringify(spec.host ?? "127.0.0.1")}`,
    `port: ${spec.port}`,
    "max_payload: 1048576",
    "jetstream {",
    `  store_dir: ${JSON.stringify(spec.storeDir)}`,
    "}",
    spec.extraConfig ?? "",
    "",
  ].join("\n");
}

/** Starts nats-server as a child process and resolves once it accepts clients. */
export async function startNatsServer(spec: NatsServerSpec): Promise<RunningNatsServer> {
  const bin = natsServerBinary();
  if (!bin) throw new Error("nats-server not found: run `apt-get install -y nats-server`");

  const port = spec.port || (await freePort(spec.host));
  mkdirSync(spec.storeDir, { recursive: true });
  const configFile = spec.configFile ?? path.join(path.dirname(spec.storeDir), `${spec.name}.conf`);
  writeFileSync(configFile, renderServerConfig({ ...spec, port }));

  const child = spawn(bin, ["-c", configFile], {
    stdio: ["ignore", "ignore", "pipe"],
    detached: spec.detached ?? false,
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));

  await waitForPort(spec.host ?? "127.0.0.1", port, child, () => stderr);
  const signal = async (sig: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    await exited;
  };
  return {
    name: spec.name,
    url: `nats://${spec.host ?? "127.0.0.1"}:${port}`,
    port,
    configFile,
    process: child,
    stop: () => signal("SIGTERM"),
    kill: () => signal("SIGKILL"),
  };
}

async function waitForPort(host: string, port: number, child: ChildProcess, stderr: () => string) {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`nats-server exited: ${stderr()}`);
    if (await canConnect(host, port)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGKILL");
  throw new Error(`nats-server did not listen on ${host}:${port}: ${stderr()}`);
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
