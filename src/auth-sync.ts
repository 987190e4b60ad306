import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { KV } from "@nats-io/kv";
import { renderAuthorization, type SystemUser } from "./auth.ts";
import { agencyEntry, serviceEntry } from "./bucket-entries.ts";
import { KvFollower } from "./kv-follower.ts";
import type { Logger } from "./logger.ts";
import type { BusConnection } from "./nats.ts";
import type { Agency, ServiceDef } from "./registry.ts";
import { BUCKET } from "./subjects.ts";

/** One nats-server whose authorization this bus keeps: its included file and its process. */
export interface AuthTarget {
  /** The file the server's config includes (see `authInclude`). */
  authFile: string;
  /** Process id to send SIGHUP to; undefined when the server runs elsewhere. */
  pid(): number | undefined;
}

const DEFAULT_DEBOUNCE_MS = 500;

/**
 * The line of a nats-server config that includes `authFile`. nats-server
 * resolves an include relative to the including file, even an absolute one.
 */
export function authInclude(configFile: string, authFile: string): string {
  const rel = path.relative(path.dirname(configFile), authFile);
  return `include ${JSON.stringify(rel)}`;
}

/**
 * Writes `text` to each target whose file differs and tells its server to
 * reload (SIGHUP: nats-server 2.9 cannot reload through the system account).
 * The file is replaced by rename, so a reload never reads half of it.
 * LIMITATION: only a local server can be signalled; one on another host
 * needs its own follower there. And each reload re-checks the bcrypt hash of
 * every connected password client, pausing the JetStream API about 90 ms
 * per such client (measured on 2.9.10): logins should be nkeys.
 * @returns the targets that were changed
 */
export function applyAuthorization(text: string, targets: AuthTarget[]): AuthTarget[] {
  // Servers may share one file (a cluster on one host): each of them reloads.
  const files = new Set(targets.map((t) => t.authFile));
  const changedFiles = [...files].filter((file) => writeIfChanged(file, text));
  const changed = targets.filter((t) => changedFiles.includes(t.authFile));
  for (const target of changed) {
    const pid = target.pid();
    if (pid !== undefined) process.kill(pid, "SIGHUP");
  }
  return changed;
}

function writeIfChanged(file: string, text: string): boolean {
  if (existsSync(file) && readFileSync(file, "utf8") === text) return false;
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, file);
  return true;
}

export interface AuthSyncOptions {
  /** Users of the bus itself, rendered first with full access. */
  system: SystemUser[];
  targets: AuthTarget[];
  log: Logger;
  /**
   * How long changes are gathered into one reload. Each reload costs a
   * pause of the JetStream API (see docs/limitations.md), so bursts of
   * registrations are applied together. Default 500.
   */
  debounceMs?: number;
  /**
   * Reloads the servers have reported so far, when their logs are at hand
   * (see `countReloads`); for several servers, the fewest any one reported.
   */
  reloadsSeen?: () => number;
}

/** How long `settled` waits for a server to reload and answer the JetStream API again. */
const SETTLE_TIMEOUT_MS = 10_000;
const SETTLE_POLL_MS = 50;

/**
 * Keeps nats-server authorization equal to the registry: follows the
 * agencies and services buckets and, after each change, renders every
 * agency's user and permissions and reloads the servers. A new agency, a
 * rotated key or a service changing owner takes effect without a restart.
 */
export class AuthSync {
  private readonly agencies = new Map<string, Agency>();
  private readonly services = new Map<string, ServiceDef>();
  private followers: KvFollower[] = [];
  private timer: NodeJS.Timeout | undefined;
  private synced = false;
  private settledAt = 0;
  /** How many times a changed authorization was written and the servers signalled. */
  applied = 0;

  constructor(
    private readonly bus: BusConnection,
    private readonly opts: AuthSyncOptions,
  ) {}

  /** Resolves once the registry as it is now has been applied. */
  async start(): Promise<void> {
    const agencies = await this.bus.kvm.open(BUCKET.agencies);
    const services = await this.bus.kvm.open(BUCKET.services);
    this.followers = [
      this.follow(agencies, this.agencies, agencyEntry),
      this.follow(services, this.services, serviceEntry),
    ] as KvFollower[];
    await Promise.all(this.followers.map((f) => f.start()));
    this.synced = true;
    this.sync();
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    await Promise.all(this.followers.map((f) => f.stop()));
  }

  /** Renders and applies now; true when a server was told to reload. */
  sync(): boolean {
    clearTimeout(this.timer);
    this.timer = undefined;
    const text = renderAuthorization(
      [...this.agencies.values()],
      [...this.services.values()],
      this.opts.system,
    );
    try {
      const changed = applyAuthorization(text, this.opts.targets);
      if (changed.length > 0) {
        this.applied++;
        this.opts.log.info(
          { agencies: this.agencies.size, servers: changed.length },
          "authorization reloaded",
        );
      }
      return changed.length > 0;
    } catch (err) {
      this.opts.log.error({ err }, "authorization not applied");
      return false;
    }
  }

  /**
   * Applies what the followed registry holds, once it holds the agencies and
   * services named in `known` (registered just before, say), and resolves
   * when the servers have reloaded and their JetStream API answers again.
   */
  async settled(known: { agencies?: string[]; services?: string[] } = {}): Promise<void> {
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    const seenAll = () =>
      (known.agencies ?? []).every((id) => this.agencies.has(id)) &&
      (known.services ?? []).every((id) => this.services.has(id));
    while (!seenAll() && Date.now() < deadline) await sleep(SETTLE_POLL_MS);
    if (this.timer) this.sync();
    if (this.applied === this.settledAt) return;
    const target = this.applied;
    const seen = this.opts.reloadsSeen;
    if (!seen) await sleep(2 * SETTLE_POLL_MS);
    while (seen && seen() < target && Date.now() < deadline) await sleep(SETTLE_POLL_MS);
    // The API pauses while a server reloads: wait until it has answered twice in a row.
    for (let answered = 0; answered < 2 && Date.now() < deadline; ) {
      await sleep(SETTLE_POLL_MS);
      answered = await this.bus.jsm.getAccountInfo().then(
        () => answered + 1,
        () => 0,
      );
    }
    this.settledAt = target;
  }

  private follow<T>(kv: KV, into: Map<string, T>, entry: (key: string, value: Uint8Array) => T) {
    return new KvFollower(
      this.bus.nc,
      kv,
      {
        put: (key, value) => {
          into.set(key, entry(key, value));
          this.schedule();
        },
        remove: (key) => {
          into.delete(key);
          this.schedule();
        },
      },
      this.opts.log,
    );
  }

  private schedule(): void {
    if (!this.synced || this.timer) return;
    this.timer = setTimeout(() => this.sync(), this.opts.debounceMs ?? DEFAULT_DEBOUNCE_MS);
    this.timer.unref();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Counts the reloads a nats-server child process reports on stderr. */
export function countReloads(stderr: NodeJS.ReadableStream | null | undefined): () => number {
  let reloads = 0;
  stderr?.on("data", (chunk: Buffer) => {
    reloads += chunk.toString().split("Reloaded server configuration").length - 1;
  });
  return () => reloads;
}
