import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { createUser, fromSeed } from "@nats-io/nkeys";
import { type ConnectionOptions, nkeyAuthenticator } from "@nats-io/transport-node";
import { hashPassword, SYSTEM_USER_PREFIX, type SystemUser } from "./auth.ts";
import { assertToken } from "./ids.ts";

/** A NATS user name and its password, as a client logs in with them. */
export interface PasswordLogin {
  user: string;
  password: string;
}

/** The bus's own logins: its broker nodes, and the operator's admin script. */
export interface SystemCredentials {
  broker: PasswordLogin;
  operator: PasswordLogin;
  /** Both, as rendered into nats-server's authorization (bcrypt hashes only). */
  users: SystemUser[];
}

interface StoredLogin extends PasswordLogin {
  passwordHash: string;
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
 * The broker's and operator's logins under `dataDir`, made with random
 * passwords on first use and kept, so a restarted bus keeps them.
 */
export function loadOrCreateSystemCredentials(dataDir: string): SystemCredentials {
  const file = path.join(ensureDir(dataDir), SYSTEM_FILE);
  let stored: { broker: StoredLogin; operator: StoredLogin } | undefined;
  if (existsSync(file)) stored = JSON.parse(readFileSync(file, "utf8"));
  if (!stored?.broker?.passwordHash || !stored.operator?.passwordHash) {
    stored = {
      broker: newLogin(`${SYSTEM_USER_PREFIX}-broker`),
      operator: newLogin(`${SYSTEM_USER_PREFIX}-operator`),
    };
    writeSecret(file, `${JSON.stringify(stored, null, 2)}\n`);
  }
  const { broker, operator } = stored;
  return {
    broker: { user: broker.user, password: broker.password },
    operator: { user: operator.user, password: operator.password },
    users: [broker, operator].map((l) => ({ user: l.user, passwordHash: l.passwordHash })),
  };
}

/** The operator's login kept under `dataDir`, if an embedded bus with authorization made one. */
export function readOperatorLogin(dataDir: string): PasswordLogin | undefined {
  const file = path.join(credentialsDir(dataDir), SYSTEM_FILE);
  if (!existsSync(file)) return undefined;
  try {
    const { operator } = JSON.parse(readFileSync(file, "utf8")) as { operator?: PasswordLogin };
    return operator?.user && operator.password ? operator : undefined;
  } catch {
    return undefined;
  }
}

function newLogin(user: string): StoredLogin {
  const password = randomBytes(24).toString("base64url");
  return { user, password, passwordHash: hashPassword(password) };
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

/** Connection options that log in with an nkey seed. */
export function nkeyLogin(seed: Uint8Array): Pick<ConnectionOptions, "authenticator"> {
  return { authenticator: nkeyAuthenticator(seed) };
}

function ensureDir(dataDir: string): string {
  const dir = credentialsDir(dataDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

function writeSecret(file: string, text: string): void {
  writeFileSync(file, text, { mode: 0o600 });
  chmodSync(file, 0o600);
}
