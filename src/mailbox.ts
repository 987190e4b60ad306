import type {
  Consumer,
  ConsumerConfig,
  ConsumerInfo,
  JetStreamClient,
  JetStreamManager,
  JsMsg,
} from "@nats-io/jetstream";
import { ClosedConnectionError } from "@nats-io/transport-node";
import type { Logger } from "./logger.ts";

export interface MailboxOptions {
  stream: string;
  /** Durable consumer name. */
  durable: string;
  /** Config used to create the consumer when it is missing, and to update it. */
  config: () => Partial<ConsumerConfig>;
  /** Receives each message; must not block. */
  onMessage: (msg: JsMsg) => void;
  log: Logger;
  /** How long one pull request waits on the server when the queue is empty. */
  pullExpiresMs?: number;
  /**
   * The server's heartbeat period for a waiting pull; two missed end the
   * pull and it is made again. Default 2 s; a function is asked at each pull.
   */
  pullHeartbeatMs?: number | (() => number);
}

/**
 * A pull request can be lost on the server (on 2.9, when the consumer's
 * leader changes, or when it reached a new consumer before its leader was
 * elected) and nothing but missing heartbeats tells: with the client's
 * default (half the expiry) a node sat idle for 30-45 s while its peer took
 * all the work, measured in a three-node cluster; with 2 s, about 5 s.
 */
const DEFAULT_PULL_HEARTBEAT_MS = 2_000;
const DEFAULT_PULL_EXPIRES_MS = 30_000;
/** A waiting pull is renewed after this many heartbeat periods at the least. */
const HEARTBEATS_PER_PULL = 4;
const LEADER_WAIT_MS = 5_000;
/** Heartbeats a second a node's idle pulls may cost, however many mailboxes it runs. */
const IDLE_HEARTBEATS_PER_S = 500;

/**
 * The pull heartbeat for one of `mailboxes` idle mailboxes of a node: 2 s
 * up to 1,000 of them, then longer, so that together they cost the node and
 * nats-server at most ~500 heartbeats a second (with 10,000 services, 2 s
 * meant 5,000 a second: a fifth of a core for each, doing nothing).
 *
 * LIMITATION: a lost pull is noticed after two missed heartbeats, so with
 * more than 1,000 services on a node an idle service's lost pull (a leader
 * change on 2.9) is noticed later: ~40 s with 10,000. Another node's pull, or
 * the next reconnect, still delivers meanwhile in a cluster.
 */
export function idlePullHeartbeatMs(mailboxes: number): number {
  return Math.max(DEFAULT_PULL_HEARTBEAT_MS, Math.ceil((mailboxes * 1000) / IDLE_HEARTBEATS_PER_S));
}

/**
 * Pulls a durable consumer only as far as its owner has room: at most
 * `limit` messages are out at once (handed over and not yet released, or
 * asked for), so no more messages are delivered to this node than it can
 * work on. At limit 0 no pulls are made and waiting messages stay in the
 * stream.
 *
 * A consumer that vanished (a known nats-server 2.9 fault on leader change)
 * or stopped sending heartbeats is recreated and the pulling resumes.
 */
export class Mailbox {
  private limit = 0;
  /** Messages handed to the owner and not yet released. */
  private outstanding = 0;
  /** Messages asked for by the pull in progress and not yet received. */
  private reserved = 0;
  private stopped = false;
  private wake: (() => void) | undefined;
  private current: { stop(): void } | undefined;
  private loop: Promise<void> | undefined;
  /**
   * The consumer as looked up once (a consumer-info request), reused for
   * every pull until a pull fails: looking it up before each pull cost one
   * JetStream API call per message when each pull brings one message, as
   * with many services each getting a share of the load.
   */
  private consumer: Consumer | undefined;

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly opts: MailboxOptions,
  ) {}

  /** Starts pulling; creating the consumer is retried until it succeeds or the mailbox stops. */
  start(): void {
    this.loop ??= this.ensureThenRun();
  }

  private async ensureThenRun(): Promise<void> {
    for (let failures = 1; !this.stopped; failures++) {
      try {
        await this.ensureConsumer();
        break;
      } catch (err) {
        this.opts.log.warn({ err, failures }, "consumer not created yet");
        await sleep(Math.min(5_000, 100 * 2 ** Math.min(failures, 6)));
      }
    }
    await this.run();
  }

  /**
   * Sets how many messages may be out at once. A pull already made is not
   * taken back (nats-server 2.9 cannot cancel one): what it still brings is
   * handed over, and the owner decides.
   */
  setLimit(limit: number): void {
    this.limit = Math.max(0, limit);
    this.kick();
  }

  /** The owner is done with one message it was handed. */
  release(): void {
    this.outstanding = Math.max(0, this.outstanding - 1);
    this.kick();
  }

  private get room(): number {
    return this.limit - this.outstanding - this.reserved;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.current?.stop();
    this.kick();
    await this.loop;
  }

  /**
   * Creates the durable consumer, or updates it to the current config, and
   * in a cluster waits for its leader: a pull made before the leader is
   * elected (about a second after creation, on 2.9) is lost without a word.
   */
  async ensureConsumer(): Promise<void> {
    const config = { ...this.opts.config(), durable_name: this.opts.durable };
    let info: ConsumerInfo;
    try {
      info = await this.jsm.consumers.info(this.opts.stream, this.opts.durable);
      // Every node calls this on each change of the service: only a real
      // change is sent, as each update is a proposal to the meta group.
      if (changes(info.config, config)) {
        info = await this.jsm.consumers.update(this.opts.stream, this.opts.durable, config);
      }
    } catch {
      info = await this.jsm.consumers.add(this.opts.stream, config);
    }
    if (info.cluster && !info.cluster.leader) await this.waitForLeader();
  }

  /** Polls for the consumer's leader a while; past that, the pull heartbeat recovers. */
  private async waitForLeader(): Promise<void> {
    const deadline = Date.now() + LEADER_WAIT_MS;
    while (!this.stopped && Date.now() < deadline) {
      await sleep(100);
      const info = await this.jsm.consumers.info(this.opts.stream, this.opts.durable);
      if (info.cluster?.leader) return;
    }
  }

  private kick(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private async waitForRoom(): Promise<void> {
    while (!this.stopped && this.room <= 0) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      await this.waitForRoom();
      if (this.stopped) return;
      this.reserved = this.room;
      try {
        this.consumer ??= await this.js.consumers.get(this.opts.stream, this.opts.durable);
        const consumer = this.consumer;
        const heartbeat = this.heartbeatMs();
        const batch = await consumer.fetch({
          max_messages: this.reserved,
          expires: Math.max(
            this.opts.pullExpiresMs ?? DEFAULT_PULL_EXPIRES_MS,
            heartbeat * HEARTBEATS_PER_PULL,
          ),
          idle_heartbeat: heartbeat,
        });
        this.current = batch;
        for await (const msg of batch) {
          this.reserved = Math.max(0, this.reserved - 1);
          this.outstanding++;
          this.opts.onMessage(msg);
        }
        failures = 0;
      } catch (err) {
        failures++;
        this.reserved = 0;
        this.consumer = undefined;
        await this.recover(err, failures);
      } finally {
        this.current = undefined;
        this.reserved = 0;
      }
    }
  }

  private heartbeatMs(): number {
    const { pullHeartbeatMs } = this.opts;
    if (typeof pullHeartbeatMs === "function") return pullHeartbeatMs();
    return pullHeartbeatMs ?? DEFAULT_PULL_HEARTBEAT_MS;
  }

  private async recover(err: unknown, failures: number): Promise<void> {
    if (this.stopped) return;
    if (err instanceof ClosedConnectionError) {
      this.stopped = true;
      return;
    }
    this.opts.log.warn({ err, failures }, "mailbox pull failed, recovering consumer");
    await sleep(Math.min(5_000, 100 * 2 ** Math.min(failures, 6)));
    try {
      await this.ensureConsumer();
    } catch (recreateErr) {
      this.opts.log.warn({ err: recreateErr }, "consumer not recreated yet");
    }
  }
}

/** Whether `wanted` sets a field to a value other than the consumer's. */
function changes(current: ConsumerConfig, wanted: Partial<ConsumerConfig>): boolean {
  const have = current as unknown as Record<string, unknown>;
  return Object.entries(wanted).some(([key, value]) => have[key] !== value);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
