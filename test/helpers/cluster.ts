import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ClusterLauncher } from "../../cluster/launcher.ts";
import { localTopology } from "../../cluster/local.ts";
import type { Topology } from "../../cluster/topology.ts";
import { AdminClient } from "../../src/admin-client.ts";
import { AgencyClient } from "../../src/client.ts";

export interface TestCluster {
  topology: Topology;
  launcher: ClusterLauncher;
  servers: string;
  admin: AdminClient;
  connect(agency: string): Promise<AgencyClient>;
}

/** Registers what to undo when the test or the test file ends, last first. */
export type Cleanup = (fn: () => unknown) => void;

/**
 * Cleanups for a `test.before` hook, where `t.teardown` is not allowed:
 * register with `add`, and call `run` from `test.after.always`.
 */
export function cleanupList(): { add: Cleanup; run: () => Promise<void> } {
  const fns: (() => unknown)[] = [];
  return {
    add: (fn) => fns.push(fn),
    run: async () => {
      for (const fn of fns.reverse()) await fn();
    },
  };
}

/**
 * Three nats-server processes in one JetStream cluster and `brokers` broker
 * nodes as child processes (scripts/start.ts), started by the launcher the
 * admin script uses; stopped by `cleanup`. With brokers, registers the
 * agencies of `registerAgencies`.
 */
export async function startCluster(cleanup: Cleanup, brokers = 2): Promise<TestCluster> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "mg-cluster-"));
  // MAGISTRAL_KEEP_TEST_DIRS=1 keeps the nodes' logs and stores for a post-mortem.
  if (!process.env.MAGISTRAL_KEEP_TEST_DIRS)
    cleanup(() => rmSync(dir, { recursive: true, force: true }));
  const topology = await localTopology({ dataDir: dir, brokers });
  const launcher = new ClusterLauncher(topology, { detached: false, readyTimeoutMs: 60_000 });
  cleanup(() => launcher.down());
  await launcher.up();
  const servers = launcher.urls().join(",");
  const admin = await AdminClient.connect({ servers: launcher.urls() });
  cleanup(() => admin.close());
  if (brokers > 0) await registerAgencies(admin);
  const connect = async (agency: string) => {
    const client = await AgencyClient.connect({ agency, nats: { servers: launcher.urls() } });
    cleanup(() => client.close());
    return client;
  };
  return { topology, launcher, servers, admin, connect };
}

/** Agencies `fns` (provider) and `mfc` (consumer). */
export async function registerAgencies(admin: AdminClient): Promise<void> {
  await admin.call("agency.put", { id: "fns", roles: ["provider"] });
  await admin.call("agency.put", { id: "mfc", roles: ["consumer"] });
}
