import path from "node:path";
import type { ConnectionOptions, Subscription } from "@nats-io/transport-node";
import { dispatch, query, type Ref, start, stop } from "nact";
import { type AlertsMsg, spawnAlerts } from "../actors/alerts.ts";
import { type JournalAnswer, type JournalMsg, spawnJournal } from "../actors/journal.ts";
import type { LaneHealth } from "../actors/lane.ts";
import { watchMembership } from "../actors/membership.ts";
import { type RegistryMsg, spawnRegistry } from "../actors/registry.ts";
import { AdminApi } from "./admin-api.ts";
import { AgencyApi, ensureReplyConsumer } from "./api.ts";
import { gatherHealth, serveAgencyHealth, serveNodeHealth } from "./cluster-health.ts";
import { DeadLetters } from "./deadletter.ts";
import { encodeValue } from "./envelope.ts";
import { MagistralError } from "./errors.ts";
import { EventSink } from "./events.ts";
import { assertToken } from "./ids.ts";
import { archiveDirOf } from "./journal-archive.ts";
import type { JournalPage, JournalQuery } from "./journal-search.ts";
import { JournalThread } from "./journal-thread.ts";
import type { KvFollower } from "./kv-follower.ts";
import { componentLogger, type Logger } from "./logger.ts";
import { listMembers } from "./membership.ts";
import { type BusConnection, connectBus, ensureInfrastructure, openBuckets } from "./nats.ts";
import type { NodeContext } from "./node-context.ts";
import { NodeObservers } from "./observers.ts";
import { RegistryStore } from "./registry.ts";
import { RegistryView } from "./registry-view.ts";

export interface BrokerOptions {
  nodeId: string;
  /** NATS connection options: servers, credentials. */
  nats: ConnectionOptions;
  /** This node's local state; the journal lives in `<dataDir>/journal/<nodeId>`. */
  dataDir: string;
  replicas?: number;
  log?: Logger;
  /** How often this node writes its heartbeat; four missed beats make it lost. Default 5 s. */
  heartbeatMs?: number;
  /** Operator alerts are also POSTed here as JSON. */
  alertWebhookUrl?: string;
  /** Port of this node's Prometheus GET /metrics; 0 picks a free one; absent serves none. */
  metricsPort?: number;
  /** Journal records older than this go to archive files and leave RocksDB; absent keeps all. */
  journalArchiveAfterMs?: number;
}

const DEFAULT_HEARTBEAT_MS = 5_000;
const QUERY_TIMEOUT_MS = 10_000;

/**
 * One Magistral broker node: its NATS connection, its actor tree (registry
 * with one actor per service, journal) and the agency and admin APIs.
 *
 * LIMITATION: a node on two cores carries 3,500-4,800 requests/s at 256 B,
 * 0.12-0.17 of raw JetStream's publish rate: an exchange is ten NATS
 * messages for the node, and the same hops with no bus logic reach only
 * 0.15-0.28 (npm run bench, docs/performance.md).
 *
 * LIMITATION: memory grows under load by 240-310 MiB above the idle ~100 MiB
 * plus ~18 KiB per registered service, as V8's heap runs two to three times
 * what is live and malloc keeps its threads' arenas: over 300 MB with 10,000
 * services under load.
 */
export class BrokerNode {
  readonly nodeId: string;
  private ctx!: NodeContext;
  private system: Ref<unknown> | undefined;
  private registry!: Ref<RegistryMsg>;
  private journal!: Ref<JournalMsg>;
  private followers: KvFollower[] = [];
  private api: AgencyApi | undefined;
  private admin: AdminApi | undefined;
  private store: JournalThread | undefined;
  private observers: NodeObservers | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private leave: (() => Promise<void>) | undefined;
  private membership: NodeJS.Timeout | undefined;
  private healthSubs: Subscription[] = [];
  private closing: Promise<void> | undefined;
  view!: RegistryView;

  private constructor(private readonly opts: BrokerOptions) {
    this.nodeId = assertToken(opts.nodeId, "node id");
  }

  static async start(opts: BrokerOptions): Promise<BrokerNode> {
    const node = new BrokerNode(opts);
    await node.boot();
    return node;
  }

  private get heartbeatMs(): number {
    return this.opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  }

  get bus(): BusConnection {
    return this.ctx.bus;
  }

  private async boot(): Promise<void> {
    const log = this.opts.log ?? componentLogger("broker", { node: this.nodeId });
    const bus = await connectBus({ name: `magistral-${this.nodeId}`, ...this.opts.nats });
    await ensureInfrastructure(bus, this.opts.replicas ?? 1);
    const buckets = await openBuckets(bus);
    const registryStore = new RegistryStore(buckets.agencies, buckets.services, buckets.schemas);
    this.store = await JournalThread.open(
      path.join(this.opts.dataDir, "journal", this.nodeId),
      log.child({ component: "journal" }),
    );
    const events = new EventSink(bus.js, this.nodeId, log.child({ component: "events" }));
    let alerts: Ref<AlertsMsg> | undefined;
    const alert = (msg: AlertsMsg) => {
      if (alerts) dispatch(alerts, msg);
    };
    this.ctx = { nodeId: this.nodeId, bus, events, log, mailboxes: new Map(), alert };
    this.view = new RegistryView(registryStore);

    this.system = start();
    alerts = spawnAlerts(this.system, this.ctx, buckets.alerts, this.opts.alertWebhookUrl);
    this.membership = watchMembership(this.ctx, buckets.brokers, this.heartbeatMs);
    const { registry, followers } = spawnRegistry(this.system, this.ctx, registryStore, this.view);
    this.registry = registry;
    this.followers = followers;
    this.journal = spawnJournal(this.system, this.ctx, this.store, {
      archiveDir: archiveDirOf(this.opts.dataDir, this.nodeId),
      archiveAfterMs: this.opts.journalArchiveAfterMs,
    }).journal;
    await Promise.all(followers.map((f) => f.start()));
    this.observers = await NodeObservers.start({
      system: this.system,
      ctx: this.ctx,
      view: this.view,
      dataDir: this.opts.dataDir,
      subscriptionsBucket: buckets.subscriptions,
      health: () => this.health(),
      metricsPort: this.opts.metricsPort,
    });

    await Promise.all(this.view.listAgencies().map((a) => ensureReplyConsumer(this.ctx, a.id)));
    this.api = new AgencyApi(this.ctx, this.view, this.store);
    this.api.start();
    this.admin = new AdminApi(this.ctx, {
      store: registryStore,
      view: this.view,
      onAgencyPut: (agency) => ensureReplyConsumer(this.ctx, agency.id),
      trace: (id) => this.trace(id),
      health: () => gatherHealth(this.ctx.bus.nc, buckets.brokers),
      brokers: () => listMembers(buckets.brokers, this.heartbeatMs),
      deadLetters: new DeadLetters(this.ctx, this.view),
      journalSearch: (q) => this.journalSearch(q),
      journalArchive: () => this.journalArchive(),
      observers: this.observers,
    });
    this.admin.start();
    this.healthSubs = [
      serveNodeHealth(bus.nc, () => this.health()),
      serveAgencyHealth(
        bus.nc,
        buckets.brokers,
        (_agency, service) => {
          const def = this.view.get(service);
          return def !== undefined && def.status !== "retired";
        },
        (agency) => this.view.agency(agency) !== undefined,
      ),
    ];
    this.startHeartbeat(buckets.brokers);
    // The API subscriptions are on the server once this resolves, so a request sent
    // right after start finds a responder.
    await bus.nc.flush();
    log.info({ replicas: this.opts.replicas ?? 1 }, "broker node started");
  }

  private startHeartbeat(bucket: Awaited<ReturnType<typeof openBuckets>>["brokers"]) {
    const beat = () =>
      bucket
        .put(this.nodeId, encodeValue({ node: this.nodeId, at: Date.now(), pid: process.pid }))
        .catch((err) => this.ctx.log.warn({ err }, "heartbeat not written"));
    beat();
    this.heartbeat = setInterval(beat, this.heartbeatMs);
    this.heartbeat.unref();
    // A node that leaves cleanly says so; one whose heartbeat just stops is lost.
    this.leave = () => bucket.delete(this.nodeId).catch(() => {});
  }

  /** The journal records of one message on this node, in order. */
  trace(id: string) {
    return query(
      this.journal,
      (replyTo) => ({ type: "trace" as const, id, replyTo }),
      QUERY_TIMEOUT_MS,
    );
  }

  /** One page of a search of this node's journal. @throws MagistralError */
  async journalSearch(q: JournalQuery): Promise<JournalPage> {
    return answerOf(
      await query(
        this.journal,
        (replyTo: Ref<JournalAnswer<JournalPage>>) => ({
          type: "search" as const,
          query: q,
          replyTo,
        }),
        QUERY_TIMEOUT_MS,
      ),
    );
  }

  /** Archives journal records past the configured age now; resolves with how many. */
  async journalArchive(): Promise<number> {
    return answerOf(
      await query(
        this.journal,
        (replyTo: Ref<JournalAnswer<number>>) => ({ type: "archive" as const, replyTo }),
        5 * QUERY_TIMEOUT_MS,
      ),
    );
  }

  /** Statistics, event subscriptions and metrics of this node. */
  get observe(): NodeObservers {
    return this.observers!;
  }

  /** Health of every service actor on this node. */
  health(): Promise<LaneHealth[]> {
    return query(
      this.registry,
      (replyTo) => ({ type: "health" as const, replyTo }),
      QUERY_TIMEOUT_MS,
    );
  }

  /** Flushes pending journal events to EVENTS. */
  flushEvents(): Promise<void> {
    return this.ctx.events.drain();
  }

  /** Stops taking work, flushes events, and closes. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  // LIMITATION: calls in flight are not waited for; their messages are
  // delivered again by another node after the ack wait.
  private async shutdown(): Promise<void> {
    clearInterval(this.heartbeat);
    clearInterval(this.membership);
    for (const sub of this.healthSubs) sub.unsubscribe();
    await this.leave?.();
    await this.api?.stop().catch(() => {});
    await this.admin?.stop().catch(() => {});
    await this.observers?.stop();
    await Promise.all(this.followers.map((f) => f.stop()));
    await Promise.all([...this.ctx.mailboxes.values()].map((m) => m.stop()));
    if (this.system) stop(this.system);
    await this.ctx.events.close().catch(() => {});
    await this.ctx.bus.nc.drain().catch(() => {});
    await this.store?.close();
    await this.observers?.close();
    this.ctx.log.info("broker node stopped");
  }
}

function answerOf<T>(answer: JournalAnswer<T>): T {
  if (!answer.ok) throw new MagistralError(answer.error.code, answer.error.message);
  return answer.result;
}
