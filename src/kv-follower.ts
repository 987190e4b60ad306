import { jetstreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { ClosedConnectionError } from "@nats-io/transport-node";
import type { Logger } from "./logger.ts";

export interface FollowerHandlers {
  put(key: string, value: Uint8Array, revision: number): void;
  remove(key: string): void;
}

/** How often a watch is checked against the bucket's stream. */
const CHECK_MS = 5_000;

/**
 * Follows a KV bucket: every current value, then every change. The watch is
 * restarted after an error, after a reconnect (a nats-server 2.9 watcher
 * can silently stop after a server restart), when it falls silent while the
 * bucket changes, and periodically; each restart hands over the current
 * values (a periodic one only those that changed) and removes keys that
 * vanished meanwhile.
 */
export class KvFollower {
  private stopped = false;
  /** Each key handed over, with the revision it was handed over at. */
  private known = new Map<string, number>();
  private current: { stop(): void } | undefined;
  private loop: Promise<void> | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  /** Whether the next watch hands over every value, changed or not; cleared once one has. */
  private replayAll = true;
  /** When the bucket's stream was created, as last seen. */
  private bucketCreated: string | undefined;
  private isLive = false;
  /** Bumped by every restart and by stop: a watch of an older one is outdated. */
  private generation = 0;
  /** The highest stream sequence the current watch has brought. */
  private lastSeq = 0;
  /** What the last check found the stream holding that the watch had not brought. */
  private owed: { seq: number; broughtThen: number } | undefined;
  private checking = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly kv: KV,
    private readonly handlers: FollowerHandlers,
    private readonly log: Logger,
    private readonly refreshMs = 60_000,
    private readonly checkMs = CHECK_MS,
  ) {}

  /**
   * Whether a watch is running and has handed over the bucket's values, so
   * what was handed over is current but for changes in flight, or for a
   * watch fallen silent since the last check. False before the first watch
   * has caught up, while a watch is restarted, and after one failed.
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
    // A watch still catching up is left to finish: restarting it would
    // start its replay over, and a long one would never end.
    this.refreshTimer = setInterval(() => {
      if (this.isLive) this.restart(false);
    }, this.refreshMs);
    this.refreshTimer.unref();
    this.checkTimer = setInterval(() => void this.check(), this.checkMs);
    this.checkTimer.unref();
    return ready;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.isLive = false;
    this.generation++;
    clearInterval(this.refreshTimer);
    clearInterval(this.checkTimer);
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
   * reconnect, a failed or silent watch, or a bucket made again, every value
   * is handed over again, so what follows can check its own state against
   * the server's.
   */
  private restart(replayAll: boolean): void {
    this.replayAll ||= replayAll;
    this.isLive = false;
    this.generation++;
    this.owed = undefined;
    this.current?.stop();
  }

  /**
   * A watch whose consumer is gone (its NATS node died, the consumer was
   * deleted) brings nothing more and says nothing: if the stream holds a
   * message the watch had not brought at the last check, still has it, and
   * the watch brought nothing since, the watch is restarted. A bucket made
   * again (its stream's creation time moved) is replayed whole.
   */
  private async check(): Promise<void> {
    if (this.stopped || this.checking || !this.current) return;
    this.checking = true;
    try {
      const info = (await this.kv.status()).streamInfo;
      if (this.remade(info.created)) {
        this.log.warn("kv bucket made again, replaying it");
        this.restart(true);
        return;
      }
      const owed = this.owed;
      if (owed && this.lastSeq < owed.seq && this.lastSeq === owed.broughtThen) {
        if (await this.stillStored(info.config.name, owed.seq)) {
          this.log.warn(
            { owed: owed.seq, brought: this.lastSeq },
            "kv watch fell silent, restarting",
          );
          this.restart(true);
          return;
        }
      }
      const last = info.state.last_seq;
      this.owed = last > this.lastSeq ? { seq: last, broughtThen: this.lastSeq } : undefined;
    } catch {
      // JetStream unreachable: a reconnect or the watch's own failure restarts it.
    } finally {
      this.checking = false;
    }
  }

  /**
   * Whether the bucket's stream was made again since it was last seen (its
   * creation time moved): its revisions start over, so what was known by
   * revision says nothing about it.
   */
  private remade(created: string): boolean {
    const remade = this.bucketCreated !== undefined && created !== this.bucketCreated;
    this.bucketCreated = created;
    return remade;
  }

  /** Whether the stream still holds `seq`: one that expired was never owed to a new watch. */
  private async stillStored(stream: string, seq: number): Promise<boolean> {
    const jsm = await jetstreamManager(this.nc);
    return (await jsm.streams.getMessage(stream, { seq }).catch(() => null)) !== null;
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
    const generation = this.generation;
    const seen = new Set<string>();
    let initial = true;
    const iter = await this.kv.watch();
    this.current = iter;
    this.lastSeq = 0;
    try {
      // Stopped or restarted while the watch was being made: it is outdated.
      if (this.stopped || generation !== this.generation) return;
      const status = await this.kv.status();
      if (this.remade(status.streamInfo.created)) this.replayAll = true;
      // Cleared only once this watch has handed everything over: a watch
      // restarted midway must not end a full replay.
      const replayAll = this.replayAll;
      const finishInitial = () => {
        initial = false;
        for (const key of this.known.keys()) if (!seen.has(key)) this.drop(key);
        if (replayAll) this.replayAll = false;
        if (generation === this.generation) this.isLive = true;
        synced();
      };
      if (status.values === 0) finishInitial();
      for await (const entry of iter) {
        if (generation !== this.generation) break;
        this.lastSeq = Math.max(this.lastSeq, entry.revision);
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
      iter.stop();
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
    try {
      this.handlers.remove(key);
    } catch (err) {
      this.log.error({ err, key }, "removal not taken, passed over");
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
