import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { EventSink, MessageEvent } from "./events.ts";
import type { Logger } from "./logger.ts";
import type { QueueDepth } from "./queue-depth.ts";

/** What the metrics of one broker node are read from. */
export interface MetricsSources {
  nodeId: string;
  events: EventSink;
  /** Health of this node's service lanes, with their circuit state. */
  health: () => Promise<{ service: string; provider: string; circuit: string }[]>;
  queueDepths: () => Promise<QueueDepth[]>;
  log: Logger;
}

const restarts = new Map<string, Map<string, number>>();

/**
 * Counts a crash after which supervision restarted or resumed an actor.
 * Kept per node id, so several broker nodes in one process keep apart.
 */
export function recordActorRestart(nodeId: string, actor: string): void {
  const mine = restarts.get(nodeId) ?? new Map<string, number>();
  mine.set(actor, (mine.get(actor) ?? 0) + 1);
  restarts.set(nodeId, mine);
}

const CIRCUIT_VALUE: Record<string, number> = { closed: 0, "half-open": 1, open: 2 };
/** Latency buckets in seconds, from a fast local call to a provider's ceiling. */
const LATENCY_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** A scrape waits this long for health and queue depths, then reports what it has. */
const COLLECT_TIMEOUT_MS = 5_000;

/**
 * Prometheus metrics of one broker node, on their own registry: message
 * events by service and outcome, latency histograms, retries (counted from
 * this node's events as they are emitted), and, read at scrape time, queue
 * depth, circuit state and actor restarts.
 */
export class NodeMetrics {
  readonly registry = new Registry();
  private server: Server | undefined;
  private readonly messages: Counter<"service" | "outcome">;
  private readonly callSeconds: Histogram<"service">;
  private readonly responseSeconds: Histogram<"service">;
  private readonly retries: Counter<"service">;

  constructor(private readonly sources: MetricsSources) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ node: sources.nodeId });
    this.messages = new Counter({
      name: "magistral_messages_total",
      help:
        "Message events on this node, by service and outcome " +
        "(accepted, rejected, responded...)",
      labelNames: ["service", "outcome"],
      registers,
    });
    this.callSeconds = latencyHistogram("magistral_provider_call_seconds", "Provider call time");
    this.responseSeconds = latencyHistogram(
      "magistral_response_seconds",
      "From acceptance to the response stored for the consumer",
    );
    this.registry.registerMetric(this.callSeconds);
    this.registry.registerMetric(this.responseSeconds);
    this.retries = new Counter({
      name: "magistral_retries_total",
      help: "Delivery attempts after the first",
      labelNames: ["service"],
      registers,
    });
    this.defineScrapeGauges(registers);
    sources.events.tap((event) => this.observe(event));
  }

  private observe(event: MessageEvent): void {
    const service = event.service ?? "-";
    this.messages.inc({ service, outcome: event.type });
    if (event.type === "attempt" && (event.attempt ?? 1) > 1) this.retries.inc({ service });
    if (event.latencyMs === undefined) return;
    if (event.type === "delivered") this.callSeconds.observe({ service }, event.latencyMs / 1000);
    if (event.type === "responded") {
      this.responseSeconds.observe({ service }, event.latencyMs / 1000);
    }
  }

  private defineScrapeGauges(registers: Registry[]): void {
    // Both queue gauges of one scrape share one round of consumer info requests.
    const sources = { ...this.sources, queueDepths: recentFor(this.sources.queueDepths, 1_000) };
    new Gauge({
      name: "magistral_queue_pending",
      help: "Requests waiting in QUEUE, not yet handed to a broker node",
      labelNames: ["service"],
      registers,
      async collect() {
        this.reset();
        for (const d of await bounded(sources.queueDepths(), [])) {
          this.set({ service: d.service }, d.pending);
        }
      },
    });
    new Gauge({
      name: "magistral_queue_oldest_age_seconds",
      help: "Age of the oldest request still in QUEUE",
      labelNames: ["service"],
      registers,
      async collect() {
        this.reset();
        for (const d of await bounded(sources.queueDepths(), [])) {
          this.set({ service: d.service }, (d.oldestAgeMs ?? 0) / 1000);
        }
      },
    });
    new Gauge({
      name: "magistral_circuit_state",
      help: "Circuit of a provider lane on this node: 0 closed, 1 half-open, 2 open",
      labelNames: ["service", "provider"],
      registers,
      async collect() {
        this.reset();
        for (const h of await bounded(sources.health(), [])) {
          this.set({ service: h.service, provider: h.provider }, CIRCUIT_VALUE[h.circuit] ?? -1);
        }
      },
    });
    new Counter({
      name: "magistral_actor_restarts_total",
      help: "Actor crashes handled by supervision (restart or resume)",
      labelNames: ["actor"],
      registers,
      collect() {
        this.reset();
        for (const [actor, n] of restarts.get(sources.nodeId) ?? []) this.inc({ actor }, n);
      },
    });
  }

  /** Text exposition of every metric, as served on /metrics. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /**
   * Serves GET /metrics on `port` (0 picks a free one) and resolves with
   * the port it listens on.
   */
  listen(port: number, host = "127.0.0.1"): Promise<number> {
    const server = createServer((req, res) => {
      if (req.method !== "GET" || req.url?.split("?")[0] !== "/metrics") {
        res.writeHead(404).end();
        return;
      }
      this.text().then(
        (body) => res.writeHead(200, { "content-type": this.registry.contentType }).end(body),
        (err) => {
          this.sources.log.warn({ err }, "metrics not collected");
          res.writeHead(500).end();
        },
      );
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
    });
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }
}

function latencyHistogram(name: string, help: string): Histogram<"service"> {
  return new Histogram({
    name,
    help,
    labelNames: ["service"],
    buckets: LATENCY_BUCKETS_S,
    registers: [],
  });
}

/** `work`'s result, or `fallback` if it fails or takes longer than a scrape should. */
function bounded<T>(work: Promise<T>, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(fallback), COLLECT_TIMEOUT_MS);
    timer.unref();
  });
  return Promise.race([work.catch(() => fallback), timeout]).finally(() => clearTimeout(timer));
}

/** `fn`, with a result reused by calls within `ms` of the call that made it. */
function recentFor<T>(fn: () => Promise<T>, ms: number): () => Promise<T> {
  let last: { at: number; result: Promise<T> } | undefined;
  return () => {
    const now = Date.now();
    if (!last || now - last.at > ms) last = { at: now, result: fn() };
    return last.result;
  };
}
