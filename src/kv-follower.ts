import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { ClosedConnectionError } from "@nats-io/transport-node";
import type { Logger } from "./logger.ts";

export interface FollowerHandlers {
  put(key: string, value: Uint8Array, revision: number): void;
  remove(key: string): void;
}

/**
 * Follows a KV bucket: every current value, then every change. The watch is
 * restarted after an error, after a reconnect (a nats-server 2.9 watcher
 * can silently stop after a server restart) and periodically; each restart
 * hands over the current values (a periodic one only those that changed)
 * and removes keys that vanished meanwhile.
 */
export class KvFollower {
  private stopped = false;
  /** Each key handed over, with the revision it was handed over at. */
  private known = new Map<string, number>();
  private current: { stop(): void } | undefined;
  private loop: Promise<void> | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  /** Whether the next watch hands over every value, changed or not; cleared once one has. */
  private replayAll = true;
  /** When the bucket's stream was created, as the last watch found it. */
  private bucketCreated: string | undefined;
  private isLive = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly kv: KV,
    private readonly handlers: FollowerHandlers,
    private readonly log: Logger,
    private readonly refreshMs = 60_000,
  ) {}

  /**
   * Whether a watch is running and has handed over the bucket's values, so
   * what was handed over is current but for changes in flight. False before
   * the first watch has caught up, while a watch is restarted, and after one
   * failed.
   */
  get live(): boolean {
    return this.isLive;
  }

  /** Resolves once the current values have been handed over, or the first watch failed. */
  start(): Promise<void> {
    let synced!: () => void;
    const ready = new Promise<void>((resolve) => {
      synced = resolve;
    });
    this.loop = this.run(synced);
    this.watchStatus();
    this.refreshTimer = setInterval(() => this.restart(false), this.refreshMs);
    this.refreshTimer.unref();
    return ready;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.isLive = false;
    clearInterval(this.refreshTimer);
    this.current?.stop();
    await this.loop;
  }

  private async watchStatus() {
    for await (const status of this.nc.status()) {
      if (this.stopped) return;
      if (status.type === "reconnect") this.restart(true);
    }
  }

  /**
   * Restarts the watch. A periodic refresh hands over only what changed:
   * handing all 10,000 services of a node to the registry every minute
   * stalled its event loop for seconds (npm run bench --scale). After a
   * reconnect or a failed watch every value is handed over again, so what
   * follows can check its own state against the server's.
   */
  private restart(replayAll: boolean): void {
    this.replayAll ||= replayAll;
    this.isLive = false;
    this.current?.stop();
  }

  private async run(synced: () => void): Promise<void> {
    for (let failures = 0; !this.stopped; ) {
      try {
        await this.watchOnce(synced);
        failures = 0;
      } catch (err) {
        // The connection closed under a watch being restarted: this is a shutdown.
        if (this.stopped || err instanceof ClosedConnectionError) return;
        failures++;
        this.replayAll = true;
        this.isLive = false;
        this.log.warn({ err, failures }, "kv watch failed, restarting");
        synced();
      }
      if (!this.stopped) await sleep(Math.min(5_000, 200 * 2 ** Math.min(failures, 5)));
    }
  }

  private async watchOnce(synced: () => void): Promise<void> {
    const seen = new Set<string>();
    let initial = true;
    const iter = await this.kv.watch();
    this.current = iter;
    const status = await this.kv.status();
    // A bucket deleted and made again starts its revisions over: what was
    // known by revision says nothing about it.
    const created = status.streamInfo.created;
    if (this.bucketCreated !== undefined && created !== this.bucketCreated) this.replayAll = true;
    this.bucketCreated = created;
    // Cleared only once this watch has handed everything over: a watch
    // restarted midway (the periodic refresh) must not end a full replay.
    const replayAll = this.replayAll;
    const finishInitial = () => {
      initial = false;
      for (const key of this.known.keys()) if (!seen.has(key)) this.drop(key);
      if (replayAll) this.replayAll = false;
      this.isLive = true;
      synced();
    };
    try {
      if (status.values === 0) finishInitial();
      for await (const entry of iter) {
        if (entry.operation === "PUT") {
          seen.add(entry.key);
          if (replayAll || this.known.get(entry.key) !== entry.revision) {
            this.known.set(entry.key, entry.revision);
            this.hand(entry.key, entry.value, entry.revision);
          }
        } else {
          this.drop(entry.key);
        }
        if (initial && entry.delta === 0) finishInitial();
      }
    } finally {
      this.isLive = false;
    }
  }

  /**
   * A value its handler cannot take (not MessagePack, not a definition) is
   * logged and passed over: thrown, it would end the watch, which would
   * start again at the same entry and never reach the changes after it.
   */
  private hand(key: string, value: Uint8Array, revision: number) {
    try {
      this.handlers.put(key, value, revision);
    } catch (err) {
      this.log.error({ err, key, revision }, "value not taken, passed over");
    }
  }

  private drop(key: string) {
    if (!this.known.delete(key)) return;
    this.handlers.remove(key);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
