import { fromPublic } from "@nats-io/nkeys";
import bcrypt from "bcryptjs";
import { ErrorCode, MagistralError } from "./errors.ts";
import { assertToken } from "./ids.ts";
import type { Agency, AgencyCredentials, ServiceDef, SigningKey } from "./registry.ts";
import type { SignatureVerifiers } from "./signature.ts";
import { consumerName, lane, STREAM, subject } from "./subjects.ts";

/**
 * A NATS user of the bus itself (a broker node, an operator), rendered with
 * no permissions block: it may publish and subscribe anywhere.
 */
export type SystemUser =
  | { user: string; passwordHash: string }
  | { nkey: string; user?: undefined; passwordHash?: undefined };

/** What one agency may do on NATS. */
export interface AgencyPermissions {
  publish: string[];
  subscribe: string[];
  /** Providers answer calls by publishing to the reply subject of each call they receive. */
  allowResponses: boolean;
}

/** Names system users take; agency ids may not look like them. */
export const SYSTEM_USER_PREFIX = "magistral";
/** The admin client's inbox is `_INBOX.operator`, so no agency may own that prefix. */
const RESERVED_AGENCY_IDS: ReadonlySet<string> = new Set(["operator"]);
const BCRYPT = /^\$2[abxy]\$\d{2}\$[./A-Za-z0-9]{53}$/;
/** Rounds of a bcrypt hash made here: about 60 ms in bcryptjs, and as long for each NATS login. */
const BCRYPT_ROUNDS = 10;

/**
 * The subjects an agency may use, derived from its roles and the services
 * it owns or serves: nothing else is allowed.
 */
export function permissionsOf(agency: Agency, services: ServiceDef[]): AgencyPermissions {
  const a = agency.id;
  const publish = [`${subject.api(a, ">")}`];
  const subscribe = [`${subject.inboxPrefix(a)}.>`];
  if (agency.roles.includes("consumer"))
    publish.push(...durableAccess(STREAM.replies, consumerName.replies(a)));
  // Any agency may subscribe to events (of its messages, of services it
  // provides or uses), so each may read its own notifications.
  publish.push(...durableAccess(STREAM.notify, consumerName.notify(a)));
  if (agency.roles.includes("operator")) {
    publish.push(subject.admin(">"));
    subscribe.push(subject.alert("*", "*"));
  }
  const calls = callSubjects(a, services);
  subscribe.push(...calls);
  return { publish, subscribe, allowResponses: calls.length > 0 };
}

/** Reading one's own durable pull consumer: its info, its next messages, and acks. */
function durableAccess(stream: string, durable: string): string[] {
  return [
    `$JS.API.CONSUMER.INFO.${stream}.${durable}`,
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.${durable}`,
    `$JS.ACK.${stream}.${durable}.>`,
  ];
}

/** The call subjects of every lane the agency serves: its own services, and broadcast shares. */
function callSubjects(agency: string, services: ServiceDef[]): string[] {
  const out = new Set<string>();
  for (const def of services) {
    if (def.status === "retired") continue;
    // The SDK's provide() listens on both subjects of the owner's lane.
    if (def.owner === agency) out.add(subject.call(def.id)).add(lane(def.id, agency, true).call);
    if (def.broadcast && def.providers.includes(agency)) out.add(lane(def.id, agency, true).call);
  }
  return [...out].sort();
}

/**
 * The `authorization { users: [...] }` block of nats-server's config: the
 * system users with full access, then every agency with credentials and
 * only its own subjects. An agency whose nkey another already uses is left
 * out rather than making the whole config invalid.
 */
export function renderAuthorization(
  agencies: Agency[],
  services: ServiceDef[],
  system: SystemUser[],
): string {
  const lines = ["authorization {", "  users: ["];
  for (const user of system) lines.push(`    ${systemEntry(user)}`);
  const nkeysSeen = new Set<string>();
  for (const agency of [...agencies].sort((x, y) => x.id.localeCompare(y.id))) {
    const perms = permissionsOf(agency, services);
    for (const login of loginsOf(agency, nkeysSeen)) lines.push(`    ${agencyEntry(login, perms)}`);
  }
  lines.push("  ]", "}", "");
  return lines.join("\n");
}

function systemEntry(user: SystemUser): string {
  if (user.user !== undefined) {
    return `{ user: ${q(user.user)}, password: ${q(user.passwordHash)} }`;
  }
  return `{ nkey: ${q(user.nkey)} }`;
}

/** How an agency logs in: each nkey, and its id with the password hash. */
function loginsOf(agency: Agency, nkeysSeen: Set<string>): string[] {
  const creds = agency.credentials ?? {};
  const logins: string[] = [];
  for (const nkey of creds.nkeys ?? []) {
    if (nkeysSeen.has(nkey)) continue;
    nkeysSeen.add(nkey);
    logins.push(`nkey: ${q(nkey)}`);
  }
  if (creds.passwordHash) logins.push(`user: ${q(agency.id)}, password: ${q(creds.passwordHash)}`);
  return logins;
}

function agencyEntry(login: string, perms: AgencyPermissions): string {
  const list = (subjects: string[]) => `[${subjects.map(q).join(", ")}]`;
  const responses = perms.allowResponses ? ", allow_responses: true" : "";
  return (
    `{ ${login}, permissions: { publish: { allow: ${list(perms.publish)} }, ` +
    `subscribe: { allow: ${list(perms.subscribe)} }${responses} } }`
  );
}

/** A double-quoted string of nats-server's config syntax. Inputs are checked tokens and keys. */
function q(value: string): string {
  return JSON.stringify(value);
}

/** A bcrypt hash of `password`, as nats-server checks it. */
export function hashPassword(password: string): string {
  if (password.length < 12) {
    throw new MagistralError(ErrorCode.BAD_REQUEST, "a password has at least 12 characters");
  }
  return bcrypt.hashSync(password, BCRYPT_ROUNDS);
}

/**
 * The security fields of an `agency.put` body, checked and merged with the
 * agency as it was: `groups`, `credentials` ({nkeys | nkey, passwordHash}),
 * `signingKeys`. Each given field replaces the one before.
 * @throws MagistralError BAD_REQUEST
 */
export function agencySecurityFields(
  body: Record<string, unknown>,
  before: Agency | undefined,
  others: Agency[],
  verifiers: SignatureVerifiers,
): Pick<Agency, "groups" | "credentials" | "signingKeys"> {
  const id = assertToken(body.id, "agency id");
  if (RESERVED_AGENCY_IDS.has(id) || id.startsWith(SYSTEM_USER_PREFIX)) {
    throw new MagistralError(ErrorCode.BAD_REQUEST, `agency id ${id} is reserved`);
  }
  const out: Pick<Agency, "groups" | "credentials" | "signingKeys"> = {
    groups: before?.groups,
    credentials: before?.credentials,
    signingKeys: before?.signingKeys,
  };
  if (body.groups !== undefined) out.groups = groupsField(body.groups);
  if (body.credentials !== undefined) {
    out.credentials = credentialsField(body.credentials, before?.credentials);
    checkNkeysUnique(id, out.credentials, others);
  }
  if (body.signingKeys !== undefined)
    out.signingKeys = signingKeysField(body.signingKeys, verifiers);
  return out;
}

function groupsField(value: unknown): string[] {
  if (!Array.isArray(value)) bad("groups must be a list of ids");
  return [...new Set(value.map((g) => assertToken(g, "group")))];
}

/**
 * Credentials given replace those before field by field: `nkeys` (or one
 * `nkey`) and `passwordHash`; null removes a field.
 */
function credentialsField(value: unknown, before: AgencyCredentials = {}): AgencyCredentials {
  if (typeof value !== "object" || value === null) bad("credentials must be a map");
  const raw = value as Record<string, unknown>;
  if (raw.password !== undefined) bad("send credentials.passwordHash, not a password");
  const out: AgencyCredentials = { ...before };
  const nkeys = raw.nkey !== undefined ? [raw.nkey] : raw.nkeys;
  if (nkeys === null) delete out.nkeys;
  else if (nkeys !== undefined) {
    if (!Array.isArray(nkeys) || nkeys.length > 2) bad("credentials.nkeys: at most two keys");
    out.nkeys = nkeys.map(checkUserNkey);
  }
  if (raw.passwordHash === null) delete out.passwordHash;
  else if (raw.passwordHash !== undefined) {
    if (typeof raw.passwordHash !== "string" || !BCRYPT.test(raw.passwordHash)) {
      bad("credentials.passwordHash must be a bcrypt hash; passwords are never sent in clear");
    }
    out.passwordHash = raw.passwordHash;
  }
  return out;
}

function checkUserNkey(value: unknown): string {
  if (typeof value !== "string" || !value.startsWith("U"))
    bad("an nkey is a user public key (U...)");
  try {
    fromPublic(value);
  } catch {
    bad("an nkey is a user public key (U...)");
  }
  return value;
}

function checkNkeysUnique(id: string, creds: AgencyCredentials, others: Agency[]) {
  for (const other of others) {
    if (other.id === id) continue;
    const taken = other.credentials?.nkeys ?? [];
    if (creds.nkeys?.some((k) => taken.includes(k))) bad(`nkey already used by agency ${other.id}`);
  }
}

function signingKeysField(value: unknown, verifiers: SignatureVerifiers): SigningKey[] {
  if (!Array.isArray(value) || value.length > 8) bad("signingKeys: a list of at most 8 keys");
  const ids = new Set<string>();
  return value.map((raw: Record<string, unknown>) => {
    const key: SigningKey = {
      keyId: String(raw?.keyId ?? ""),
      algorithm: typeof raw?.algorithm === "string" ? raw.algorithm : "ed25519",
      publicKey: String(raw?.publicKey ?? ""),
    };
    if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(key.keyId) || ids.has(key.keyId)) {
      bad("each signing key needs its own keyId of [A-Za-z0-9_.:-]");
    }
    ids.add(key.keyId);
    verifiers.checkKey(key);
    return key;
  });
}

/** An agency as it may be shown or journaled: the password hash left out. */
export function redactAgency(agency: Agency | undefined): Agency | undefined {
  if (!agency?.credentials?.passwordHash) return agency;
  return { ...agency, credentials: { ...agency.credentials, passwordHash: "<bcrypt>" } };
}

function bad(message: string): never {
  throw new MagistralError(ErrorCode.BAD_REQUEST, message);
}
