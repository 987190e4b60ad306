import type { Msg, Subscription } from "@nats-io/transport-node";
import { recentAlerts } from "./alert-log.ts";
import { respond } from "./api.ts";
import { agencySecurityFields, redactAgency } from "./auth.ts";
import { DEFAULT_CIRCUIT } from "./circuit-breaker.ts";
import type { DeadLetterFilter, DeadLetters } from "./deadletter.ts";
import { decodeValue } from "./envelope.ts";
import { ErrorCode, MagistralError, toMagistralError } from "./errors.ts";
import type { ChangedEntity } from "./events.ts";
import { assertToken, isMessageId, newMessageId } from "./ids.ts";
import { type JournalPage, type JournalQuery, parseJournalQuery } from "./journal-search.ts";
import type { NodeContext } from "./node-context.ts";
import type { NodeObservers } from "./observers.ts";
import {
  type Agency,
  type AgencyRole,
  DEFAULT_RETRY,
  type RegistryStore,
  type SchemaBundle,
  SERVICE_DEFAULTS,
  type ServiceDef,
} from "./registry.ts";
import type { RegistryView } from "./registry-view.ts";
import { compileSchema, xsdTargetNamespace } from "./schema.ts";
import { securityHandlers, servicePolicyField } from "./security-admin.ts";
import { defaultVerifiers } from "./signature.ts";
import { parseStatsQuery } from "./stats-store.ts";
import { BROKER_QUEUE_GROUP } from "./subjects.ts";

type Handler = (body: Record<string, unknown>) => Promise<unknown>;

export interface AdminDeps {
  store: RegistryStore;
  view: RegistryView;
  onAgencyPut: (agency: Agency) => Promise<void>;
  trace: (id: string) => Promise<unknown[]>;
  health: () => Promise<unknown[]>;
  /** Broker nodes by their heartbeats, alive or lately gone. */
  brokers: () => Promise<unknown[]>;
  deadLetters: DeadLetters;
  journalSearch: (q: JournalQuery) => Promise<JournalPage>;
  journalArchive: () => Promise<number>;
  observers: NodeObservers;
}

const ROLES: ReadonlySet<string> = new Set(["consumer", "provider", "subscriber", "operator"]);

/**
 * The operators' API, `mg.admin.<noun>.<verb>`, answered by every broker
 * node in one queue group. Bodies and replies are MessagePack maps; a reply
 * is `{ ok: true, result }` or `{ ok: false, error }`.
 */
export class AdminApi {
  private sub: Subscription | undefined;
  private readonly handlers: Record<string, Handler>;

  constructor(
    private readonly ctx: NodeContext,
    private readonly deps: AdminDeps,
  ) {
    this.handlers = {
      "agency.list": async () => deps.view.listAgencies().map((a) => redactAgency(a)!),
      "agency.put": (body) => this.putAgency(body),
      "service.list": async () => deps.view.list(),
      "service.get": async (body) => this.getService(body),
      "service.put": (body) => this.putService(body),
      "service.health": () => deps.health(),
      "broker.list": () => deps.brokers(),
      "message.trace": (body) => this.trace(body),
      "dlq.list": (body) => deps.deadLetters.list(dlqFilter(body)),
      "dlq.show": (body) => deps.deadLetters.show(Number(body.seq)),
      "dlq.replay": (body) => deps.deadLetters.replay(dlqFilter(body)),
      "dlq.purge": (body) => deps.deadLetters.purge(dlqFilter(body)),
      "journal.search": (body) => deps.journalSearch(parseJournalQuery(body)),
      "journal.archive": () => deps.journalArchive(),
      "stats.query": (body) => deps.observers.statsQuery(parseStatsQuery(body)),
      "stats.queues": () => deps.observers.queueDepths(),
      "subscription.list": async (body) =>
        deps.observers.subscriptions.list(
          body.agency === undefined ? undefined : assertToken(body.agency, "agency"),
        ),
      "alert.list": (body) =>
        recentAlerts(ctx.bus.jsm, {
          limit: typeof body.limit === "number" ? body.limit : undefined,
          service: typeof body.service === "string" ? body.service : undefined,
          severity: typeof body.severity === "string" ? body.severity : undefined,
        }),
      ...securityHandlers({ ...deps, journalChange: (change) => this.journalChange(change) }),
    };
  }

  start(): void {
    this.sub = this.ctx.bus.nc.subscribe("mg.admin.>", {
      queue: BROKER_QUEUE_GROUP,
      callback: (_err, m) => this.onRequest(m),
    });
  }

  async stop(): Promise<void> {
    await this.sub?.drain();
  }

  private onRequest(m: Msg): void {
    const op = m.subject.slice("mg.admin.".length);
    const handler = this.handlers[op];
    const run = async () => {
      if (!handler) throw new MagistralError(ErrorCode.NOT_FOUND, `no admin operation ${op}`);
      const body = m.data.length ? decodeValue(m.data) : {};
      if (typeof body !== "object" || body === null) {
        throw new MagistralError(ErrorCode.BAD_REQUEST, "body must be a map");
      }
      return handler(body as Record<string, unknown>);
    };
    run().then(
      (result) => respond(m, { ok: true, result }),
      (err) => {
        const error = toMagistralError(err);
        if (error.code === ErrorCode.INTERNAL)
          this.ctx.log.error({ err, op }, "admin operation failed");
        respond(m, { ok: false, error: error.toWire() });
      },
    );
  }

  private async putAgency(body: Record<string, unknown>): Promise<Agency> {
    const id = assertToken(body.id, "agency id");
    const before = await this.deps.store.getAgency(id);
    // An update that names no roles keeps the agency's roles.
    const roles = Array.isArray(body.roles) ? body.roles : (before?.roles ?? ["consumer"]);
    if (!roles.every((r) => typeof r === "string" && ROLES.has(r))) {
      throw new MagistralError(
        ErrorCode.BAD_REQUEST,
        "roles: consumer, provider, subscriber, operator",
      );
    }
    const now = Date.now();
    const agency: Agency = {
      id,
      name: typeof body.name === "string" ? body.name : (before?.name ?? id),
      roles: roles as AgencyRole[],
      contact: typeof body.contact === "string" ? body.contact : before?.contact,
      ...agencySecurityFields(body, before, this.deps.view.listAgencies(), defaultVerifiers),
      registeredAt: before?.registeredAt ?? now,
      updatedAt: now,
    };
    await this.deps.store.putAgency(agency);
    const [shownBefore, shown] = [redactAgency(before), redactAgency(agency)!];
    this.journalChange({
      entity: "agency",
      key: id,
      agency: id,
      before: shownBefore,
      after: shown,
    });
    await this.deps.onAgencyPut(agency);
    return shown;
  }

  private getService(body: Record<string, unknown>): ServiceDef {
    const id = assertToken(body.id, "service id");
    const def = this.deps.view.get(id);
    if (!def) throw new MagistralError(ErrorCode.NOT_FOUND, `no service ${id}`);
    return def;
  }

  /**
   * Registers or updates a service. `body.service` holds the fields to set;
   * `body.schema`, when given, replaces the request schema, and for an XSD
   * `body.schema.rootElement` names the request's root element.
   */
  private async putService(body: Record<string, unknown>): Promise<ServiceDef> {
    const input = (body.service ?? {}) as Partial<ServiceDef>;
    const id = assertToken(input.id, "service id");
    const owner = assertToken(input.owner, "service owner");
    if (!this.deps.view.agency(owner)) {
      throw new MagistralError(ErrorCode.BAD_REQUEST, `owner agency ${owner} is not registered`);
    }
    const before = await this.deps.store.getService(id);
    const now = Date.now();
    const def: ServiceDef = {
      ...SERVICE_DEFAULTS,
      ...before,
      ...input,
      id,
      owner,
      retry: { ...DEFAULT_RETRY, ...before?.retry, ...input.retry },
      circuit: { ...DEFAULT_CIRCUIT, ...before?.circuit, ...input.circuit },
      adapter: input.adapter ?? before?.adapter ?? {},
      policy: servicePolicyField(before?.policy, input.policy),
      schema: before?.schema,
      registeredAt: before?.registeredAt ?? now,
      updatedAt: now,
    };
    checkNumbers(def);
    checkRetention(def);
    this.checkProviders(def);
    if (body.schema) def.schema = await this.putSchema(id, body.schema as SchemaInput);
    await this.deps.store.putService(def);
    this.journalChange({
      entity: "service",
      key: id,
      agency: owner,
      service: id,
      before,
      after: def,
    });
    return def;
  }

  /**
   * Journals a change of the registry with what it was before.
   * LIMITATION: the admin API does not yet know which operator calls it, so
   * `who` is always "operator".
   */
  private journalChange(change: {
    entity: ChangedEntity;
    key: string;
    agency: string;
    service?: string;
    before: unknown;
    after: unknown;
  }): void {
    this.ctx.events.emit({ type: "changed", id: newMessageId(), who: "operator", ...change });
  }

  private checkProviders(def: ServiceDef) {
    if (!def.broadcast) return;
    if (!Array.isArray(def.providers) || def.providers.length === 0) {
      throw new MagistralError(ErrorCode.BAD_REQUEST, "a broadcast service needs providers");
    }
    for (const p of def.providers) {
      if (!this.deps.view.agency(assertToken(p, "provider"))) {
        throw new MagistralError(ErrorCode.BAD_REQUEST, `provider agency ${p} is not registered`);
      }
    }
  }

  private async putSchema(id: string, input: SchemaInput): Promise<ServiceDef["schema"]> {
    const bundle = toBundle(input);
    // Compile once here, so a broken schema is refused at registration, not at the first submit.
    compileSchema(`check-${id}-${Date.now()}`, bundle).dispose();
    const namespace =
      bundle.kind === "xsd"
        ? (input.namespace ?? xsdTargetNamespace(bundle.files[bundle.main]!) ?? "")
        : "";
    if (bundle.kind === "xsd" && input.rootElement) {
      // Unnamed XML requests are routed by their root: two services cannot share one.
      const holder = this.deps.view.serviceForRoot(namespace, input.rootElement);
      if (holder && holder !== id) {
        throw new MagistralError(
          ErrorCode.BAD_REQUEST,
          `root element {${namespace}}${input.rootElement} already routes to ${holder}`,
        );
      }
    }
    const revision = await this.deps.store.putSchema(id, bundle);
    if (bundle.kind === "json") return { kind: "json", revision };
    return { kind: "xsd", namespace, rootElement: input.rootElement, revision };
  }

  private async trace(body: Record<string, unknown>): Promise<unknown[]> {
    if (!isMessageId(body.id))
      throw new MagistralError(ErrorCode.BAD_REQUEST, "id must be a message id");
    const records = await this.deps.trace(body.id);
    if (records.length === 0)
      throw new MagistralError(ErrorCode.NOT_FOUND, `no journal record of ${body.id}`);
    return records;
  }
}

function dlqFilter(body: Record<string, unknown>): DeadLetterFilter {
  return {
    seq: typeof body.seq === "number" ? body.seq : undefined,
    service: typeof body.service === "string" ? assertToken(body.service, "service") : undefined,
    all: body.all === true,
    limit: typeof body.limit === "number" ? body.limit : undefined,
  };
}

type SchemaInput = SchemaBundle & { rootElement?: string; namespace?: string };

function toBundle(input: SchemaInput): SchemaBundle {
  if (input.kind === "json" && typeof input.schema === "object" && input.schema !== null) {
    return { kind: "json", schema: input.schema };
  }
  if (
    input.kind === "xsd" &&
    typeof input.main === "string" &&
    typeof input.files === "object" &&
    typeof input.files?.[input.main] === "string"
  ) {
    return { kind: "xsd", main: input.main, files: input.files };
  }
  throw new MagistralError(
    ErrorCode.BAD_REQUEST,
    "schema: {kind: json, schema} or {kind: xsd, main, files}",
  );
}

const RETENTIONS: ReadonlySet<string> = new Set(["full", "metadata", "none"]);

function checkRetention(def: ServiceDef) {
  if (!RETENTIONS.has(def.journalRetention)) {
    throw new MagistralError(ErrorCode.BAD_REQUEST, "journalRetention: full, metadata or none");
  }
}

const MAX_CALL_TIMEOUT_MS = 120_000;

function checkNumbers(def: ServiceDef) {
  const positive: [string, number][] = [
    ["callTimeoutMs", def.callTimeoutMs],
    ["concurrency", def.concurrency],
    ["maxPayloadBytes", def.maxPayloadBytes],
    ["retry.attempts", def.retry.attempts],
    ["retry.lifetimeMs", def.retry.lifetimeMs],
    ["retry.maxLifetimeMs", def.retry.maxLifetimeMs],
    ["retry.factor", def.retry.factor],
    ["latencyBudgetMs", def.latencyBudgetMs],
    ["circuit.consecutiveFailures", def.circuit.consecutiveFailures],
    ["circuit.minCalls", def.circuit.minCalls],
    ["circuit.windowMs", def.circuit.windowMs],
    ["circuit.openMs", def.circuit.openMs],
  ];
  for (const [name, value] of positive) {
    if (!Number.isFinite(value) || value <= 0) {
      throw new MagistralError(ErrorCode.BAD_REQUEST, `${name} must be a positive number`);
    }
  }
  const fractions: [string, number][] = [
    ["retry.jitter", def.retry.jitter],
    ["circuit.failureRate", def.circuit.failureRate],
  ];
  for (const [name, value] of fractions) {
    if (!Number.isFinite(value) || value < 0 || value > 1) {
      throw new MagistralError(ErrorCode.BAD_REQUEST, `${name} must be a number from 0 to 1`);
    }
  }
  const { firstDelayMs, maxDelayMs } = def.retry;
  if (!Number.isFinite(firstDelayMs) || firstDelayMs < 0) {
    throw new MagistralError(ErrorCode.BAD_REQUEST, "retry.firstDelayMs must be 0 or more");
  }
  if (!Number.isFinite(maxDelayMs) || maxDelayMs < firstDelayMs) {
    throw new MagistralError(
      ErrorCode.BAD_REQUEST,
      "retry.maxDelayMs must be at least firstDelayMs",
    );
  }
  // The ack wait (twice the call timeout plus 5 s) must stay inside the
  // 10-minute de-duplication window of REPLIES, or a redelivery after a crash
  // could store a second answer.
  if (def.callTimeoutMs > MAX_CALL_TIMEOUT_MS) {
    throw new MagistralError(
      ErrorCode.BAD_REQUEST,
      `callTimeoutMs may be at most ${MAX_CALL_TIMEOUT_MS}`,
    );
  }
  if (!["active", "suspended", "retired"].includes(def.status)) {
    throw new MagistralError(ErrorCode.BAD_REQUEST, "status: active, suspended or retired");
  }
}
