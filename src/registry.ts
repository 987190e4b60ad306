import type { KV } from "@nats-io/kv";
import { type CircuitPolicy, DEFAULT_CIRCUIT } from "./circuit-breaker.ts";
import { decodeValue, encodeValue } from "./envelope.ts";
import { ErrorCode, MagistralError } from "./errors.ts";
import { assertToken } from "./ids.ts";
import type { ServicePolicy } from "./policy.ts";

export type AgencyRole = "consumer" | "provider" | "subscriber" | "operator";

export interface Agency {
  id: string;
  name: string;
  roles: AgencyRole[];
  contact?: string;
  /** Groups a service's access list can name instead of single agencies. */
  groups?: string[];
  /** How the agency authenticates to NATS: public parts only. */
  credentials?: AgencyCredentials;
  /** Keys that verify the agency's request signatures, by key id. */
  signingKeys?: SigningKey[];
  registeredAt: number;
  updatedAt: number;
}

/** The public halves of an agency's NATS credentials; secrets never reach the registry. */
export interface AgencyCredentials {
  /** NATS nkey user public keys (`U...`); two while a key is being rotated. */
  nkeys?: string[];
  /** NATS user name and bcrypt hash of its password, for clients without nkey support. */
  user?: string;
  passwordHash?: string;
}

/** A public key that verifies an agency's request signatures. */
export interface SigningKey {
  /** Named by a signed envelope's `keyId`. */
  keyId: string;
  /** Name of a registered SignatureVerifier, e.g. "ed25519". */
  algorithm: string;
  /** For ed25519: the 32 raw key bytes in base64. */
  publicKey: string;
}

export type ServiceStatus = "active" | "suspended" | "retired";

/**
 * What the journal keeps of a request: `full` the payload, content type and
 * headers; `metadata` the content type and headers only; `none` neither
 * (for personal data). Sizes, times and outcomes are always kept.
 */
export type JournalRetention = "full" | "metadata" | "none";

/** Retry policy of a service. Every duration is in milliseconds. */
export interface RetryPolicy {
  /** Delivery attempts before the message is dead-lettered. */
  attempts: number;
  firstDelayMs: number;
  factor: number;
  maxDelayMs: number;
  /** Fraction of each delay randomised, 0..1. */
  jitter: number;
  /** Lifetime of a message when the consumer asks for none. */
  lifetimeMs: number;
  /** The longest lifetime a consumer may ask for. */
  maxLifetimeMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 10,
  firstDelayMs: 1_000,
  factor: 2,
  maxDelayMs: 60_000,
  jitter: 0.2,
  lifetimeMs: 24 * 3600_000,
  maxLifetimeMs: 7 * 24 * 3600_000,
};

/** Software and hardware of the adapter that serves a service, as declared by its owner. */
export interface AdapterMetadata {
  software?: { name?: string; version?: string; vendor?: string; platform?: string };
  hardware?: { host?: string; cpu?: string; memoryMb?: number; os?: string; location?: string };
}

/** What the registry knows of a request schema; the files themselves live in the schemas bucket. */
export interface SchemaRef {
  kind: "xsd" | "json";
  /** XSD only: target namespace and root element, used to route unnamed XML requests. */
  namespace?: string;
  rootElement?: string;
  /** Revision of the schema entry, so caches can tell a changed schema. */
  revision: number;
}

export interface ServiceDef {
  id: string;
  version: string;
  owner: string;
  description: string;
  status: ServiceStatus;
  schema?: SchemaRef;
  /** Time a single provider call may take. */
  callTimeoutMs: number;
  /** Calls in flight at once per broker node (bulkhead). */
  concurrency: number;
  maxPayloadBytes: number;
  retry: RetryPolicy;
  circuit: CircuitPolicy;
  /** Provider call time above which the operator is alerted. */
  latencyBudgetMs: number;
  /** What the journal keeps of each request's content. */
  journalRetention: JournalRetention;
  /**
   * A broadcast service is served by several provider agencies: each request
   * is delivered, with its own retries, to every one of `providers`.
   */
  broadcast: boolean;
  providers: string[];
  adapter: AdapterMetadata;
  /** Who may call and how much: access list, rate limit, quota, signatures. */
  policy?: ServicePolicy;
  registeredAt: number;
  updatedAt: number;
}

export const SERVICE_DEFAULTS = {
  version: "1.0.0",
  description: "",
  status: "active" as ServiceStatus,
  callTimeoutMs: 10_000,
  concurrency: 64,
  maxPayloadBytes: 512 * 1024,
  latencyBudgetMs: 5_000,
  journalRetention: "metadata" as JournalRetention,
  broadcast: false,
  providers: [] as string[],
  circuit: DEFAULT_CIRCUIT,
};

/** The provider agencies a request to `def` is delivered to. */
export function providersOf(def: ServiceDef): string[] {
  return def.broadcast ? def.providers : [def.owner];
}

/** A schema as stored: the main file and every file it imports, by relative path. */
export type SchemaBundle =
  | { kind: "xsd"; main: string; files: Record<string, string> }
  | { kind: "json"; schema: Record<string, unknown> };

export class RegistryStore {
  constructor(
    readonly agencies: KV,
    readonly services: KV,
    readonly schemas: KV,
  ) {}

  async getAgency(id: string): Promise<Agency | undefined> {
    return readEntry<Agency>(this.agencies, id);
  }

  async putAgency(agency: Agency): Promise<void> {
    assertToken(agency.id, "agency id");
    await this.agencies.put(agency.id, encodeValue(agency));
  }

  async listAgencies(): Promise<Agency[]> {
    return listEntries<Agency>(this.agencies);
  }

  async getService(id: string): Promise<ServiceDef | undefined> {
    return readEntry<ServiceDef>(this.services, id);
  }

  async putService(def: ServiceDef): Promise<void> {
    assertToken(def.id, "service id");
    await this.services.put(def.id, encodeValue(def));
  }

  async listServices(): Promise<ServiceDef[]> {
    return listEntries<ServiceDef>(this.services);
  }

  async getSchema(serviceId: string): Promise<SchemaBundle | undefined> {
    return readEntry<SchemaBundle>(this.schemas, serviceId);
  }

  /** Stores a schema bundle and returns its revision. */
  async putSchema(serviceId: string, bundle: SchemaBundle): Promise<number> {
    const bytes = encodeValue(bundle);
    if (bytes.length > 900 * 1024) {
      throw new MagistralError(ErrorCode.BAD_REQUEST, "schema bundle larger than 900 KiB");
    }
    return this.schemas.put(serviceId, bytes);
  }
}

async function readEntry<T>(kv: KV, key: string): Promise<T | undefined> {
  const entry = await kv.get(key);
  if (entry?.operation !== "PUT" || entry.value.length === 0) return undefined;
  return decodeValue(entry.value) as T;
}

async function listEntries<T>(kv: KV): Promise<T[]> {
  const out: T[] = [];
  const keys = await kv.keys();
  for await (const key of keys) {
    const value = await readEntry<T>(kv, key);
    if (value) out.push(value);
  }
  return out;
}
