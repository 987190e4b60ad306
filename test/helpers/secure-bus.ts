import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type RunningNatsServer, startNatsServer } from "../../cluster/nats-server.ts";
import { AdminClient } from "../../src/admin-client.ts";
import { renderAuthorization } from "../../src/auth.ts";
import { AuthSync, authInclude, countReloads } from "../../src/auth-sync.ts";
import { BrokerNode } from "../../src/broker.ts";
import { AgencyClient } from "../../src/client.ts";
import {
  type AgencyNkey,
  loadOrCreateAgencyNkey,
  loadOrCreateSystemCredentials,
  type SystemCredentials,
} from "../../src/credentials.ts";
import { rootLogger } from "../../src/logger.ts";
import type { AgencyRole } from "../../src/registry.ts";
import { waitFor } from "./bus.ts";

/** A nats-server with authorization, a broker node, and the registry kept in its config. */
export interface SecureBus {
  dir: string;
  servers: string[];
  server: RunningNatsServer;
  broker: BrokerNode;
  admin: AdminClient;
  system: SystemCredentials;
  /** Registers (or updates) an agency with its own nkey and waits until it may log in. */
  addAgency(id: string, roles?: AgencyRole[], extra?: Record<string, unknown>): Promise<AgencyNkey>;
  /** Connects as a registered agency with its nkey. */
  connect(
    id: string,
    opts?: Partial<Parameters<typeof AgencyClient.connect>[0]>,
  ): Promise<AgencyClient>;
  /** Waits until the server runs with the authorization the registry implies now. */
  settled(): Promise<void>;
}

type Teardown = (fn: () => Promise<void> | void) => void;
let seq = 0;

/**
 * Starts the secure bus. `teardown` registers clean-up: `t.teardown` in a
 * test, or a list run by `test.after.always` for a bus shared by a file.
 */
export async function startSecureBus(teardown: Teardown): Promise<SecureBus> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "mg-sec-"));
  teardown(() => rmSync(dir, { recursive: true, force: true }));
  const system = loadOrCreateSystemCredentials(dir);
  const configFile = path.join(dir, "nats.conf");
  const authFile = path.join(dir, "auth.conf");
  writeFileSync(authFile, renderAuthorization([], [], system.users));
  const server = await startNatsServer({
    name: `sec-${++seq}-${process.pid}`,
    storeDir: path.join(dir, "js"),
    configFile,
    extraConfig: authInclude(configFile, authFile),
  });
  teardown(() => server.kill());
  const reloadsSeen = countReloads(server.process.stderr);
  const servers = [server.url];
  const broker = await BrokerNode.start({
    nodeId: `secnode${seq}`,
    nats: { servers, ...system.broker },
    dataDir: dir,
    log: rootLogger.child({ test: path.basename(dir) }),
  });
  teardown(() => broker.close());
  const target = { authFile, pid: () => server.process.pid };
  const sync = new AuthSync(broker.bus, {
    system: system.users,
    targets: [target],
    log: rootLogger,
    debounceMs: 20,
    reloadsSeen,
  });
  await sync.start();
  teardown(() => sync.stop());
  const admin = await AdminClient.connect({ servers, ...system.operator });
  teardown(() => admin.close());

  const settled = async () => {
    const { text } = await admin.call<{ text: string }>("auth.render", { system: system.users });
    await waitFor(() => readFileSync(authFile, "utf8") === text);
    await sync.settled();
  };
  return {
    dir,
    servers,
    server,
    broker,
    admin,
    system,
    settled,
    async addAgency(id, roles = ["consumer", "provider"], extra = {}) {
      const key = loadOrCreateAgencyNkey(dir, id);
      await admin.call("agency.put", {
        id,
        name: id,
        roles,
        credentials: { nkeys: [key.publicKey] },
        ...extra,
      });
      await waitFor(() => broker.view.agency(id) !== undefined);
      await settled();
      return key;
    },
    async connect(id, opts = {}) {
      const key = loadOrCreateAgencyNkey(dir, id);
      const client = await AgencyClient.connect({
        agency: id,
        nkeySeed: key.seed,
        ...opts,
        nats: { servers, ...opts.nats },
      });
      teardown(() => client.close());
      return client;
    },
  };
}
