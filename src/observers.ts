import path from "node:path";
import type { KV } from "@nats-io/kv";
import { query, type Ref } from "nact";
import type { JournalAnswer } from "../actors/journal.ts";
import { spawnNotifier } from "../actors/notifier.ts";
import { type StatsMsg, spawnStats } from "../actors/stats.ts";
import { MagistralError } from "./errors.ts";
import { KvFollower } from "./kv-follower.ts";
import { NodeMetrics } from "./metrics.ts";
import type { NodeContext } from "./node-context.ts";
import { type QueueDepth, queueDepths } from "./queue-depth.ts";
import type { RegistryView } from "./registry-view.ts";
import { type StatsQuery, type StatsRow, StatsStore } from "./stats-store.ts";
import { ensureNotifyConsumer, SubscriptionIndex, SubscriptionStore } from "./subscriptions.ts";
import { SubscriptionApi } from "./subscriptions-api.ts";

export interface ObserversOptions {
  system: Ref<unknown>;
  ctx: NodeContext;
  view: RegistryView;
  dataDir: string;
  subscriptionsBucket: KV;
  health: () => Promise<{ service: string; provider: string; circuit: string }[]>;
  /** Port of GET /metrics; 0 picks a free one; undefined serves none. */
  metricsPort?: number;
}

const QUERY_TIMEOUT_MS = 30_000;

/**
 * The parts of a broker node that watch the bus rather than carry it:
 * statistics, event subscriptions and their notifier, and the Prometheus
 * endpoint. Started after the registry, stopped before the connection.
 */
export class NodeObservers {
  private stats!: Ref<StatsMsg>;
  private statsStore!: StatsStore;
  private follower!: KvFollower;
  private api!: SubscriptionApi;
  private metrics: NodeMetrics | undefined;
  readonly subscriptions = new SubscriptionIndex();
  /** Where GET /metrics listens, once started. */
  metricsPort: number | undefined;

  private constructor(private readonly opts: ObserversOptions) {}

  static async start(opts: ObserversOptions): Promise<NodeObservers> {
    const observers = new NodeObservers(opts);
    await observers.boot();
    return observers;
  }

  private async boot(): Promise<void> {
    const { ctx, system } = this.opts;
    this.statsStore = await StatsStore.open(path.join(this.opts.dataDir, "stats", ctx.nodeId));
    this.stats = spawnStats(system, ctx, this.statsStore).stats;

    this.follower = new KvFollower(
      ctx.bus.nc,
      this.opts.subscriptionsBucket,
      {
        put: (key, value, revision) => this.subscriptions.set(key, value, revision),
        remove: (key) => this.subscriptions.delete(key),
      },
      ctx.log.child({ component: "subscriptions" }),
    );
    await this.follower.start();
    // A consumer lost to a server fault is recreated for every agency that subscribed.
    await Promise.all(
      this.subscriptions.agencies().map((a) => ensureNotifyConsumer(ctx.bus.jsm, a)),
    );
    spawnNotifier(system, ctx, this.subscriptions);
    const store = new SubscriptionStore(this.opts.subscriptionsBucket);
    this.api = new SubscriptionApi(ctx, this.opts.view, store, this.subscriptions);
    this.api.start();
    await this.startMetrics();
  }

  private async startMetrics(): Promise<void> {
    if (this.opts.metricsPort === undefined) return;
    const { ctx } = this.opts;
    this.metrics = new NodeMetrics({
      nodeId: ctx.nodeId,
      events: ctx.events,
      health: this.opts.health,
      queueDepths: () => this.queueDepths(),
      log: ctx.log.child({ component: "metrics" }),
    });
    this.metricsPort = await this.metrics.listen(this.opts.metricsPort);
  }

  /** Statistics over a range, from this node's rollups. @throws MagistralError */
  async statsQuery(q: StatsQuery): Promise<StatsRow[]> {
    const answer = await query(
      this.stats,
      (replyTo: Ref<JournalAnswer<StatsRow[]>>) => ({ type: "query" as const, query: q, replyTo }),
      QUERY_TIMEOUT_MS,
    );
    if (!answer.ok) throw new MagistralError(answer.error.code, answer.error.message);
    return answer.result;
  }

  /** What waits in QUEUE for every registered service. */
  queueDepths(): Promise<QueueDepth[]> {
    const defs = this.opts.view.list().filter((d) => d.status !== "retired");
    return queueDepths(this.opts.ctx.bus, defs);
  }

  /** Text of this node's metrics, as GET /metrics serves it. */
  metricsText(): Promise<string> | undefined {
    return this.metrics?.text();
  }

  /** Stops taking requests; called before the actor system stops. */
  async stop(): Promise<void> {
    await this.metrics?.close();
    await this.api?.stop().catch(() => {});
    await this.follower?.stop();
  }

  /** Closes the statistics store; called once the actors are stopped. */
  async close(): Promise<void> {
    await this.statsStore?.close();
  }
}
