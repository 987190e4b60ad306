import { renderAuthorization, type SystemUser } from "./auth.ts";
import { ErrorCode, MagistralError } from "./errors.ts";
import type { ChangedEntity } from "./events.ts";
import { assertToken } from "./ids.ts";
import { mergePolicy, policyOf, type ServicePolicy } from "./policy.ts";
import type { RegistryStore } from "./registry.ts";
import type { RegistryView } from "./registry-view.ts";

type Handler = (body: Record<string, unknown>) => Promise<unknown>;

/** A registry change to journal, as the admin API journals it. */
export interface SecurityChange {
  entity: ChangedEntity;
  key: string;
  agency: string;
  service?: string;
  before: unknown;
  after: unknown;
}

export interface SecurityAdminDeps {
  store: RegistryStore;
  view: RegistryView;
  journalChange(change: SecurityChange): void;
}

/**
 * The admin operations of security: `policy.get`, `policy.put` (a service's
 * policy alone, journaled as a policy change) and `auth.render` (nats-server
 * authorization of the registry as it is, for the admin script to install).
 */
export function securityHandlers(deps: SecurityAdminDeps): Record<string, Handler> {
  return {
    "policy.get": async (body) => policyOf(await service(deps, body.service)),
    "policy.put": (body) => putPolicy(deps, body),
    "auth.render": async (body) => ({
      // From this node's followed copy, not by listing the buckets: a listing
      // made just as a server reloads can fail, and renders are asked for then.
      text: renderAuthorization(
        deps.view.listAgencies(),
        deps.view.list(),
        systemUsers(body.system),
      ),
    }),
  };
}

async function service(deps: SecurityAdminDeps, id: unknown) {
  const serviceId = assertToken(id, "service");
  const def = await deps.store.getService(serviceId);
  if (!def) throw new MagistralError(ErrorCode.NOT_FOUND, `no service ${serviceId}`);
  return def;
}

/**
 * Changes the fields of a service's policy that `body.policy` gives. Every
 * broker node follows the services bucket, so the change applies at once.
 */
async function putPolicy(deps: SecurityAdminDeps, body: Record<string, unknown>) {
  const def = await service(deps, body.service);
  const before = policyOf(def);
  const after: ServicePolicy = mergePolicy(def.policy, body.policy);
  await deps.store.putService({ ...def, policy: after, updatedAt: Date.now() });
  deps.journalChange({
    entity: "policy",
    key: def.id,
    agency: def.owner,
    service: def.id,
    before,
    after,
  });
  return after;
}

function systemUsers(value: unknown): SystemUser[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    throw new MagistralError(ErrorCode.BAD_REQUEST, "system: a list of {user, passwordHash}");
  }
  return value.map((raw: Record<string, unknown>) => {
    if (typeof raw?.nkey === "string") return { nkey: raw.nkey };
    if (typeof raw?.user === "string" && typeof raw.passwordHash === "string") {
      return { user: raw.user, passwordHash: raw.passwordHash };
    }
    throw new MagistralError(ErrorCode.BAD_REQUEST, "system: a list of {user, passwordHash}");
  });
}

/** The fields of a service.put that are policy: merged with the policy before, and checked. */
export function servicePolicyField(before: ServicePolicy | undefined, input: unknown) {
  return input === undefined && before === undefined ? undefined : mergePolicy(before, input);
}
