import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { createUser, fromSeed } from "@nats-io/nkeys";
import { type ConnectionOptions, nkeyAuthenticator } from "@nats-io/transport-node";
import type { SystemUser } from "./auth.ts";
import { assertToken } from "./ids.ts";

/** Connection options that log in, for a client of the bus itself. */
export type Login = Pick<ConnectionOptions, "authenticator">;

/**
 * The bus's own logins: its broker nodes, and the operator's admin script.
 * They are nkeys, not passwords: nats-server checks every connected
 * password client's bcrypt hash again on each reload, and meanwhile its
 * JetStream API does not answer (about 100 ms per client, measured).
 */
export interface SystemCredentials {
  broker: Login;
  operator: Login;
  /** Both, as rendered into nats-server's authorization (public keys only). */
  users: SystemUser[];
}

interface StoredSeeds {
  broker: string;
  operator: string;
}

/** An agency's nkey: the public key to register and the seed to log in with. */
export interface AgencyNkey {
  agency: string;
  publicKey: string;
  seed: Uint8Array;
  /** Where the seed is kept. */
  file: string;
}

/** Where an embedded bus keeps the logins it made: `<dataDir>/credentials`, mode 0700. */
export function credentialsDir(dataDir: string): string {
  return path.join(dataDir, "credentials");
}

const SYSTEM_FILE = "system.json";

/**
 * The broker's and operator's nkeys under `dataDir`, made on first use and
 * kept, so a restarted bus keeps them.
 */
export function loadOrCreateSystemCredentials(dataDir: string): SystemCredentials {
  const file = path.join(ensureDir(dataDir), SYSTEM_FILE);
  let stored = readSeeds(file);
  if (!stored) {
    const seed = () => new TextDecoder().decode(createUser().getSeed());
    stored = { broker: seed(), operator: seed() };
    writeSecret(file, `${JSON.stringify(stored, null, 2)}\n`);
    // The same seeds as files, for processes given MAGISTRAL_NATS_NKEY.
    writeSecret(path.join(path.dirname(file), "broker.nk"), `${stored.broker}\n`);
    writeSecret(path.join(path.dirname(file), "operator.nk"), `${stored.operator}\n`);
  }
  const broker = encoder.encode(stored.broker);
  const operator = encoder.encode(stored.operator);
  return {
    broker: nkeyLogin(broker),
    operator: nkeyLogin(operator),
    users: [broker, operator].map((seed) => ({ nkey: fromSeed(seed).getPublicKey() })),
  };
}

/** The operator's login kept under `dataDir`, if an embedded bus with authorization made one. */
export function readOperatorLogin(dataDir: string): Login | undefined {
  const stored = readSeeds(path.join(credentialsDir(dataDir), SYSTEM_FILE));
  return stored ? nkeyLogin(encoder.encode(stored.operator)) : undefined;
}

/** The system users of an embedded bus under `dataDir`, as rendered into its authorization. */
export function readSystemUsers(dataDir: string): SystemUser[] | undefined {
  const stored = readSeeds(path.join(credentialsDir(dataDir), SYSTEM_FILE));
  if (!stored) return undefined;
  return [stored.broker, stored.operator].map((seed) => ({
    nkey: fromSeed(encoder.encode(seed)).getPublicKey(),
  }));
}

function readSeeds(file: string): StoredSeeds | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const stored = JSON.parse(readFileSync(file, "utf8")) as Partial<StoredSeeds>;
    return typeof stored.broker === "string" && typeof stored.operator === "string"
      ? (stored as StoredSeeds)
      : undefined;
  } catch {
    return undefined;
  }
}

/** The nkey of `agency` kept in `<dataDir>/credentials/<agency>.nk`, made on first use. */
export function loadOrCreateAgencyNkey(dataDir: string, agency: string): AgencyNkey {
  assertToken(agency, "agency");
  const file = path.join(ensureDir(dataDir), `${agency}.nk`);
  if (existsSync(file)) return readAgencyNkey(file, agency);
  const pair = createUser();
  writeSecret(file, `${new TextDecoder().decode(pair.getSeed())}\n`);
  return { agency, publicKey: pair.getPublicKey(), seed: pair.getSeed(), file };
}

/** Reads an nkey seed file (`SU...`, as `nsc` and this bus write them). */
export function readAgencyNkey(file: string, agency: string): AgencyNkey {
  const seed = new TextEncoder().encode(readFileSync(file, "utf8").trim());
  return { agency, publicKey: fromSeed(seed).getPublicKey(), seed, file };
}

/** Connection options that log in with the nkey seed kept in `file`. */
export function nkeyFileLogin(file: string): Login {
  return nkeyLogin(encoder.encode(readFileSync(file, "utf8").trim()));
}

/** Connection options that log in with an nkey seed. */
export function nkeyLogin(seed: Uint8Array): Pick<ConnectionOptions, "authenticator"> {
  return { authenticator: nkeyAuthenticator(seed) };
}

const encoder = new TextEncoder();

function ensureDir(dataDir: string): string {
  const dir = credentialsDir(dataDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

function writeSecret(file: string, text: string): void {
  writeFileSync(file, text, { mode: 0o600 });
  chmodSync(file, 0o600);
}
