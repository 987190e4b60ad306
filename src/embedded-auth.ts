import type { ChildProcess } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { renderAuthorization } from "./auth.ts";
import { AuthSync, authInclude, countReloads } from "./auth-sync.ts";
import {
  type AgencyNkey,
  credentialsDir,
  type Login,
  loadOrCreateAgencyNkey,
  loadOrCreateSystemCredentials,
  type SystemCredentials,
} from "./credentials.ts";
import type { Logger } from "./logger.ts";
import type { BusConnection } from "./nats.ts";

/** The authorization of an embedded nats-server and the logins it was made with. */
export interface EmbeddedAuth {
  /** The included file holding `authorization { users: [...] }`. */
  authFile: string;
  /** Where the logins are kept: `<dataDir>/credentials`. */
  credentialsDir: string;
  /** How broker nodes log in. */
  broker: Login;
  /** How the admin script logs in. */
  operator: Login;
  /** An agency's nkey, made on first use and kept under the credentials folder. */
  agencyNkey(agency: string): AgencyNkey;
  /**
   * Keeps the server's authorization equal to the registry, read through
   * `bus` (a broker's connection). Stopped with the embedded server.
   */
  follow(bus: BusConnection, log: Logger): Promise<void>;
  /**
   * Resolves once the registry, including the agencies and services named in
   * `known`, is in force and the server's JetStream API answers again.
   */
  settled(known?: { agencies?: string[]; services?: string[] }): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Prepares authorization for an embedded server whose config will be
 * `configFile`: the system logins (kept under `<dataDir>/credentials`), the
 * auth file beside the config (kept from the last run, so agencies known
 * then can log in at once), and the include line for the config.
 */
export function prepareEmbeddedAuth(
  dataDir: string,
  configFile: string,
  server: () => ChildProcess | undefined,
): { auth: EmbeddedAuth; include: string } {
  const system: SystemCredentials = loadOrCreateSystemCredentials(dataDir);
  const authFile = path.join(path.dirname(configFile), "auth.conf");
  if (!existsSync(authFile)) {
    writeFileSync(authFile, renderAuthorization([], [], system.users), { mode: 0o600 });
  }
  let sync: AuthSync | undefined;
  const auth: EmbeddedAuth = {
    authFile,
    credentialsDir: credentialsDir(dataDir),
    broker: system.broker,
    operator: system.operator,
    agencyNkey: (agency) => loadOrCreateAgencyNkey(dataDir, agency),
    async follow(bus, log) {
      if (sync) return;
      const target = { authFile, pid: () => server()?.pid };
      const reloadsSeen = countReloads(server()?.stderr);
      sync = new AuthSync(bus, { system: system.users, targets: [target], log, reloadsSeen });
      await sync.start();
    },
    async settled(known) {
      await sync?.settled(known);
    },
    async stop() {
      await sync?.stop();
    },
  };
  return { auth, include: authInclude(configFile, authFile) };
}
