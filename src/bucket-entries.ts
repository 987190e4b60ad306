import { decodeValue } from "./envelope.ts";
import type { Agency, ServiceDef } from "./registry.ts";

/**
 * Definitions read back from the registry's buckets. The admin API stores
 * each under its own id and in full; anything else was written to a bucket
 * by hand, and taking it would crash whatever reads it (the registry, the
 * embedded server's authorization). These throw instead, and the KV
 * follower logs and passes over what throws.
 */
export function agencyEntry(key: string, value: Uint8Array): Agency {
  const agency = definitionUnder(key, value) as Partial<Agency>;
  if (!Array.isArray(agency.roles) || !agency.roles.every((r) => typeof r === "string")) {
    throw new Error(`the agency under ${key} has no roles`);
  }
  return agency as Agency;
}

export function serviceEntry(key: string, value: Uint8Array): ServiceDef {
  const def = definitionUnder(key, value) as Partial<ServiceDef>;
  if (typeof def.owner !== "string") throw new Error(`the service under ${key} has no owner`);
  return def as ServiceDef;
}

function definitionUnder(key: string, value: Uint8Array): { id: string } {
  const entry = decodeValue(value) as { id?: unknown } | null | undefined;
  if (typeof entry !== "object" || entry === null || entry.id !== key) {
    throw new Error(`the entry under ${key} is not a definition with that id`);
  }
  return entry as { id: string };
}
