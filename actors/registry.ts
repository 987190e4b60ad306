import { dispatch, query, type Ref, spawn, stop } from "nact";
import { agencyEntry, serviceEntry } from "../src/bucket-entries.ts";
import { coalescing } from "../src/coalesce.ts";
import { KvFollower } from "../src/kv-follower.ts";
import { recordActorRestart } from "../src/metrics.ts";
import type { NodeContext } from "../src/node-context.ts";
import type { RegistryStore, ServiceDef } from "../src/registry.ts";
import type { RegistryView } from "../src/registry-view.ts";
import type { LaneHealth } from "./lane.ts";
import { type ServiceMsg, spawnService } from "./service.ts";

/** A change of the services bucket: a service registered or changed, or removed. */
export type ServiceChange = { put: ServiceDef } | { removed: string };

export type RegistryMsg =
  /** The bucket's changes in the order they came, in batches: see `coalescing`. */
  | { type: "servicesChanged"; changes: ServiceChange[] }
  | { type: "health"; replyTo: Ref<LaneHealth[]> };

interface RegistryState {
  services: Map<string, Ref<ServiceMsg>>;
}

const HEALTH_QUERY_MS = 2_000;

/**
 * Follows the services bucket and keeps one supervised service actor per
 * registered service (a retired one drains its queue) and this node's
 * registry view current.
 */
export function spawnRegistry(
  parent: Ref<unknown>,
  ctx: NodeContext,
  store: RegistryStore,
  view: RegistryView,
) {
  const registry = spawn(
    parent,
    (state: RegistryState, msg: RegistryMsg, actx) => {
      switch (msg.type) {
        case "servicesChanged":
          // One bad entry must not cost the others of its batch.
          for (const change of msg.changes) {
            try {
              if ("put" in change) onServicePut(ctx, state, view, change.put, actx.self);
              else onServiceRemoved(state, view, change.removed);
            } catch (err) {
              ctx.log.error({ err, component: "registry", change }, "service change not applied");
            }
          }
          return state;
        case "health":
          collectHealth(state, msg.replyTo);
          return state;
      }
    },
    "registry",
    {
      initialState: { services: new Map() },
      onCrash: (_msg, err, sctx) => {
        ctx.log.error({ err, component: "registry" }, "registry actor crashed, resuming");
        recordActorRestart(ctx.nodeId, "registry");
        return sctx.resume;
      },
    },
  );

  // nact copies an actor's children for every message it handles: one
  // message per service at start was 10,000 copies of a map growing to
  // 10,000 entries on a node with that many services. The follower awaits
  // between entries, so only a batch that spans the turn gathers them.
  // Removals go through the same batch, so a put and a removal of one
  // service keep their order.
  const change = coalescing(
    (changes: ServiceChange[]) => dispatch(registry, { type: "servicesChanged", changes }),
    { across: "turn" },
  );
  const follower = new KvFollower(
    ctx.bus.nc,
    store.services,
    {
      put: (key, value) => change({ put: serviceEntry(key, value) }),
      remove: (key) => change({ removed: key }),
    },
    ctx.log.child({ component: "registry" }),
  );
  const agencies = new KvFollower(
    ctx.bus.nc,
    store.agencies,
    {
      put: (key, value) => view.setAgency(agencyEntry(key, value)),
      remove: (key) => view.deleteAgency(key),
    },
    ctx.log.child({ component: "registry" }),
  );
  return { registry, followers: [follower, agencies] };
}

function onServicePut(
  ctx: NodeContext,
  state: RegistryState,
  view: RegistryView,
  def: ServiceDef,
  self: Ref<RegistryMsg>,
): RegistryState {
  view.set(def);
  const existing = state.services.get(def.id);
  // A retired service keeps its actor: the API refuses new requests, and the
  // ones already accepted are still delivered (or dead-lettered).
  if (existing) dispatch(existing, { type: "update", def });
  else state.services.set(def.id, spawnService(self, ctx, def));
  return state;
}

function onServiceRemoved(state: RegistryState, view: RegistryView, id: string): RegistryState {
  view.delete(id);
  const existing = state.services.get(id);
  if (existing) stop(existing);
  state.services.delete(id);
  return state;
}

function collectHealth(state: RegistryState, replyTo: Ref<LaneHealth[]>) {
  const asks = [...state.services.values()].map((service) =>
    query(
      service,
      (tempRef: Ref<LaneHealth[]>) => ({ type: "health" as const, replyTo: tempRef }),
      HEALTH_QUERY_MS,
    ).catch((): LaneHealth[] => []),
  );
  Promise.all(asks).then((all) => dispatch(replyTo, all.flat()));
}
