import type {
  ConsumerConfig,
  ConsumerInfo,
  JetStreamClient,
  JetStreamManager,
  JsMsg,
} from "@nats-io/jetstream";
import { ClosedConnectionError, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { isAckSubject, PulledMsg } from "./jsmsg.ts";
import type { Logger } from "./logger.ts";
import { PullChannel, type PullRequest } from "./pull-channel.ts";

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
/** nats.js's default JetStream request timeout, for a client made without one. */
const ACK_TIMEOUT_MS = 5_000;
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
 * Pulls go over one inbox subscription for the mailbox's life (see
 * `PullChannel`), one at a time: a new pull asks for the room there is once
 * the last one brought its batch, expired, or failed.
 *
 * A consumer that vanished (a known nats-server 2.9 fault on leader change)
 * or stopped sending heartbeats is recreated and the pulling resumes.
 *
 * LIMITATION: one durable consumer and one pull per service. When requests
 * are spread thinly over many services, every delivery is a pull and an ack
 * of its own on a consumer of its own: with 500 in flight over 10,000
 * services a node carries 1,350-2,330 requests/s against 4,680-5,440 over
 * 10, and nats-server spends four times the CPU per message.
 */
export class Mailbox {
  private limit = 0;
  /** Messages handed to the owner and not yet released. */
  private outstanding = 0;
  private stopped = false;
  private wake: (() => void) | undefined;
  private channel: PullChannel | undefined;
  private loop: Promise<void> | undefined;
  private readonly nc: NatsConnection;
  private readonly ackTimeoutMs: number;

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly opts: MailboxOptions,
  ) {
    this.nc = connectionOf(js);
    this.ackTimeoutMs = js.getOptions().timeout ?? ACK_TIMEOUT_MS;
  }

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
        if (this.closedBy(err)) return;
        this.opts.log.warn({ err, failures }, "consumer not created yet");
        await sleep(backoffMs(failures));
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

  /** Messages the pull in progress may still bring count as out. */
  private get room(): number {
    return this.limit - this.outstanding - (this.channel?.remaining ?? 0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.channel?.cancel();
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
    if (this.stopped) return;
    const { stream, durable } = this.opts;
    const next = `${this.js.apiPrefix}.CONSUMER.MSG.NEXT.${stream}.${durable}`;
    const channel = new PullChannel(this.nc, next, (msg) => this.deliver(msg));
    this.channel = channel;
    let failures = 0;
    try {
      while (!this.stopped) {
        await this.waitForRoom();
        if (this.stopped) return;
        const end = await channel.pull(this.pullRequest());
        if (end.kind === "closed") {
          this.stopped = true;
        } else if (end.kind === "failed") {
          failures++;
          await this.recover(end.err, failures);
        } else if (end.kind !== "renew") {
          failures = 0;
        }
      }
    } finally {
      channel.close();
    }
  }

  private pullRequest(): PullRequest {
    const heartbeatMs = this.heartbeatMs();
    const expiresMs = Math.max(
      this.opts.pullExpiresMs ?? DEFAULT_PULL_EXPIRES_MS,
      heartbeatMs * HEARTBEATS_PER_PULL,
    );
    return { batch: this.room, expiresMs, heartbeatMs };
  }

  private deliver(raw: Msg): void {
    if (!isAckSubject(raw.reply)) {
      this.opts.log.warn({ subject: raw.subject }, "not a JetStream delivery in the mailbox inbox");
      return;
    }
    const msg = new PulledMsg(raw, this.nc, this.ackTimeoutMs);
    // Brought by a pull made before the stop: back to the stream at once for
    // another node, rather than after the ack wait.
    if (this.stopped) {
      try {
        msg.nak();
      } catch {
        // The connection closed: the ack wait brings it back all the same.
      }
      return;
    }
    this.outstanding++;
    try {
      this.opts.onMessage(msg);
    } catch (err) {
      this.opts.log.error({ err, seq: msg.seq }, "mailbox owner failed to take a message");
    }
  }

  private heartbeatMs(): number {
    const { pullHeartbeatMs } = this.opts;
    if (typeof pullHeartbeatMs === "function") return pullHeartbeatMs();
    return pullHeartbeatMs ?? DEFAULT_PULL_HEARTBEAT_MS;
  }

  /** Whether `err` means the connection is gone for good; the mailbox then stops quietly. */
  private closedBy(err: unknown): boolean {
    if (!(err instanceof ClosedConnectionError) && !this.nc.isClosed()) return false;
    this.stopped = true;
    return true;
  }

  private async recover(err: unknown, failures: number): Promise<void> {
    if (this.stopped || this.closedBy(err)) return;
    this.opts.log.warn({ err, failures }, "mailbox pull failed, recovering consumer");
    await sleep(backoffMs(failures));
    try {
      await this.ensureConsumer();
    } catch (recreateErr) {
      if (this.closedBy(recreateErr)) return;
      this.opts.log.warn({ err: recreateErr }, "consumer not recreated yet");
    }
  }
}

/**
 * nats.js keeps the connection on its JetStream clients (its own KV reads it
 * there) without typing it; the mailbox subscribes and publishes on it.
 */
function connectionOf(js: JetStreamClient): NatsConnection {
  const nc = (js as unknown as { nc?: NatsConnection }).nc;
  if (!nc) throw new Error("JetStream client without a NATS connection");
  return nc;
}

function backoffMs(failures: number): number {
  return Math.min(5_000, 100 * 2 ** Math.min(failures, 6));
}

/** Whether `wanted` sets a field to a value other than the consumer's. */
function changes(current: ConsumerConfig, wanted: Partial<ConsumerConfig>): boolean {
  const have = current as unknown as Record<string, unknown>;
  return Object.entries(wanted).some(([key, value]) => have[key] !== value);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
