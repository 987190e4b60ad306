import {
  ClosedConnectionError,
  createInbox,
  type Msg,
  type NatsConnection,
  type Subscription,
} from "@nats-io/transport-node";

const NANOS_PER_MS = 1_000_000;

/** Status codes nats-server 2.9 sends to a pull request's reply subject. */
const STATUS = {
  heartbeat: 100,
  /** A no-wait pull found nothing; not sent for ours, but it ends a pull all the same. */
  noMessages: 404,
  /** The pull expired: what it had not brought yet will not come. */
  timeout: 408,
} as const;

/**
 * Silence, in heartbeat periods, after which a pull is taken for lost: two
 * missed heartbeats, and half a period more for timer and network jitter.
 */
const LOST_AFTER_HEARTBEATS = 2.5;

export interface PullRequest {
  batch: number;
  expiresMs: number;
  heartbeatMs: number;
}

/** How a pull ended. */
export type PullEnd =
  /** It brought its whole batch. */
  | { kind: "complete" }
  /** It expired on the server before its batch was full. */
  | { kind: "expired" }
  /** The connection came back: the server may have lost the pull with its state. */
  | { kind: "renew" }
  /** The server ended it with an error status, or it went silent. */
  | { kind: "failed"; err: Error }
  | { kind: "cancelled" }
  | { kind: "closed" };

/** A pull ended by a status other than a heartbeat or expiry (409, 503...). */
export class PullStatusError extends Error {
  constructor(
    readonly code: number,
    description: string,
  ) {
    super(`pull ended by the server: ${code} ${description}`);
    this.name = "PullStatusError";
  }
}

export class MissedHeartbeatsError extends Error {
  constructor(silentMs: number) {
    super(`pull lost: no heartbeat for ${silentMs} ms`);
    this.name = "MissedHeartbeatsError";
  }
}

interface Pending {
  heartbeatMs: number;
  /** Sent to the server; a pull parked while disconnected is not. */
  sent: boolean;
  settle: (end: PullEnd) => void;
}

/**
 * One pull at a time on a durable consumer, over one subscription kept for
 * as long as the channel lives. nats.js's `fetch` subscribes a new inbox,
 * arms timers and unsubscribes for every pull; with thousands of mailboxes
 * each pulling one message at a time, that churn was most of what a message
 * cost the broker and nats-server.
 *
 * The inbox changes only when a pull may still live on the server while this
 * side gave it up (it went silent, or the connection came back): nats-server
 * drops a waiting pull whose reply subject has no subscriber, so that pull
 * cannot deliver past the mailbox's limit.
 */
export class PullChannel {
  /** Messages the pull in progress may still bring. */
  remaining = 0;
  private sub: Subscription | undefined;
  private inbox = "";
  private pending: Pending | undefined;
  private lastHeard = 0;
  private watchdog: ReturnType<typeof setTimeout> | undefined;
  private watchdogDue = 0;
  private connected = true;
  private closed = false;
  private readonly unwatch: () => void;

  constructor(
    private readonly nc: NatsConnection,
    /** `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>` */
    private readonly nextSubject: string,
    /** Receives each message of the consumer, the inbox's statuses left out. */
    private readonly onMessage: (msg: Msg) => void,
  ) {
    this.unwatch = watchConnection(nc, (event) => this.onConnection(event));
  }

  /** Asks for `batch` messages; resolves when the pull ends, however it ends. */
  pull(request: PullRequest): Promise<PullEnd> {
    if (this.closed || this.nc.isClosed()) return Promise.resolve({ kind: "closed" });
    return new Promise((settle) => {
      const pending: Pending = { heartbeatMs: request.heartbeatMs, sent: false, settle };
      this.pending = pending;
      this.remaining = request.batch;
      // While disconnected the pull waits for the reconnect, which renews it.
      if (!this.connected) return;
      const body = JSON.stringify({
        batch: request.batch,
        expires: Math.round(request.expiresMs * NANOS_PER_MS),
        idle_heartbeat: Math.round(request.heartbeatMs * NANOS_PER_MS),
      });
      try {
        if (!this.sub) this.subscribe();
        this.nc.publish(this.nextSubject, body, { reply: this.inbox });
      } catch (err) {
        const closed = err instanceof ClosedConnectionError || this.nc.isClosed();
        return this.end(closed ? { kind: "closed" } : { kind: "failed", err: asError(err) });
      }
      pending.sent = true;
      this.lastHeard = Date.now();
      this.armWatchdog(request.heartbeatMs * LOST_AFTER_HEARTBEATS);
    });
  }

  /** Ends the pull in progress, if any; what it still brings is handed over all the same. */
  cancel(): void {
    this.end({ kind: "cancelled" });
  }

  close(): void {
    this.closed = true;
    this.cancel();
    this.unwatch();
    clearTimeout(this.watchdog);
    this.watchdog = undefined;
    this.sub?.unsubscribe();
    this.sub = undefined;
  }

  private subscribe(): void {
    this.inbox = createInbox(inboxPrefixOf(this.nc));
    const inbox = this.inbox;
    this.sub = this.nc.subscribe(inbox, {
      callback: (err, msg) => {
        // A permission error ends the subscription: a new inbox is needed.
        if (err) return this.end({ kind: "failed", err }, { abandon: true });
        this.lastHeard = Date.now();
        if (msg.subject === inbox) return this.onStatus(msg);
        if (this.remaining > 0) this.remaining--;
        this.onMessage(msg);
        if (this.remaining === 0) this.end({ kind: "complete" });
      },
    });
  }

  /**
   * Gives the inbox up at once, so that the server drops any pull still
   * waiting on it; the next pull subscribes a new one (not sooner: a
   * subscription refused for its permissions would otherwise be retried
   * without pause).
   */
  private abandonInbox(): void {
    this.sub?.unsubscribe();
    this.sub = undefined;
  }

  private onStatus(msg: Msg): void {
    const code = msg.headers?.code ?? 0;
    // A heartbeat only proves the pull alive; flow control is not used by pulls.
    if (code === STATUS.heartbeat) return;
    if (code === STATUS.timeout || code === STATUS.noMessages) {
      this.end({ kind: "expired" });
    } else {
      const description = msg.headers?.description ?? "";
      this.end({ kind: "failed", err: new PullStatusError(code, description) });
    }
  }

  private onConnection(event: ConnectionEvent): void {
    if (event === "close") {
      this.end({ kind: "closed" });
      return;
    }
    this.connected = event === "reconnect";
    // Heartbeats missed while disconnected say nothing of the pull; the
    // reconnect renews it, as the server it lived on may have restarted.
    if (this.connected) this.end({ kind: "renew" }, { abandon: this.pending?.sent === true });
  }

  private end(end: PullEnd, opts: { abandon?: boolean } = {}): void {
    const pending = this.pending;
    if (opts.abandon) this.abandonInbox();
    if (!pending) return;
    this.pending = undefined;
    this.remaining = 0;
    pending.settle(end);
  }

  /**
   * One timer for the channel's life, moved on lazily: a pull that ends and
   * the next one that starts cost no timer of their own.
   */
  private armWatchdog(afterMs: number): void {
    const due = Date.now() + afterMs;
    if (this.watchdog && this.watchdogDue <= due) return;
    clearTimeout(this.watchdog);
    this.watchdogDue = due;
    this.watchdog = setTimeout(() => this.checkHeartbeats(), afterMs);
    this.watchdog.unref();
  }

  private checkHeartbeats(): void {
    this.watchdog = undefined;
    const pending = this.pending;
    if (!pending?.sent || !this.connected) return;
    const lostAfter = pending.heartbeatMs * LOST_AFTER_HEARTBEATS;
    const silent = Date.now() - this.lastHeard;
    if (silent < lostAfter) this.armWatchdog(lostAfter - silent);
    else this.end({ kind: "failed", err: new MissedHeartbeatsError(silent) }, { abandon: true });
  }
}

/**
 * The connection's inbox prefix, which nats.js keeps on the connection
 * without typing it: replies under it stay within permissions that let the
 * broker read `_INBOX.>` (or its own prefix).
 */
function inboxPrefixOf(nc: NatsConnection): string | undefined {
  return (nc as unknown as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

type ConnectionEvent = "disconnect" | "reconnect" | "close";
type ConnectionListener = (event: ConnectionEvent) => void;

/**
 * One reader of a connection's status for all its channels: a status
 * iterator each would mean thousands of them on a node with many services.
 */
const watchers = new WeakMap<NatsConnection, Set<ConnectionListener>>();

function watchConnection(nc: NatsConnection, listener: ConnectionListener): () => void {
  let listeners = watchers.get(nc);
  if (!listeners) {
    const all = new Set<ConnectionListener>();
    listeners = all;
    watchers.set(nc, all);
    const tell = (event: ConnectionEvent) => {
      for (const each of [...all]) each(event);
    };
    (async () => {
      for await (const status of nc.status()) {
        if (status.type === "disconnect" || status.type === "reconnect") tell(status.type);
      }
    })().catch(() => {});
    nc.closed().then(
      () => tell("close"),
      () => tell("close"),
    );
  }
  listeners.add(listener);
  return () => listeners.delete(listener);
}
