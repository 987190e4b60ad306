import { Worker } from "node:worker_threads";
import { ErrorCode, MagistralError } from "./errors.ts";
import type {
  JournalReady,
  JournalRequest,
  JournalRequestBody,
  JournalResponse,
} from "./journal-protocol.ts";
import type { JournalPage, JournalQuery } from "./journal-search.ts";
import type { JournalRecord } from "./journal-store.ts";
import type { Logger } from "./logger.ts";

/** Who a message id was accepted from, as the submit path's duplicate check reads it. */
export interface Acceptance {
  agency?: string;
  service?: string;
}

/** `.ts` when running under tsx, `.js` when compiled. */
const OWN_EXT = import.meta.url.endsWith(".ts") ? ".ts" : ".js";

function startWorker(dir: string): Worker {
  const entry = new URL(`./journal-worker${OWN_EXT}`, import.meta.url);
  if (OWN_EXT === ".js") return new Worker(entry, { workerData: { dir } });
  // A worker thread does not inherit tsx's loader: the bootstrap registers it.
  const boot = new URL("./ts-worker.mjs", import.meta.url);
  return new Worker(boot, { workerData: { dir, entry: entry.href } });
}

interface Pending {
  resolve: (result: unknown) => void;
  reject: (err: Error) => void;
}

/**
 * This node's journal store, run by a worker thread (src/journal-worker.ts)
 * so that RocksDB's synchronous writes and their fsync stay off the
 * broker's event loop. Every method is a message to the worker; duplicate
 * checks arriving together are read in one batch.
 */
export class JournalThread {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private waitingIds: { id: string; resolve: (a: Acceptance | undefined) => void }[] = [];
  private closing = false;
  private failure: Error | undefined;

  private constructor(
    private readonly worker: Worker,
    private readonly log: Logger,
  ) {
    worker.on("message", (res: JournalResponse) => this.settle(res));
    worker.on("error", (err) => this.fail(err));
    worker.on("exit", (code) => {
      if (!this.closing) this.fail(new Error(`journal worker exited with code ${code}`));
    });
  }

  /** Starts the worker and opens the store in `dir`; rejects if it cannot be opened. */
  static async open(dir: string, log: Logger): Promise<JournalThread> {
    const worker = startWorker(dir);
    await new Promise<void>((resolve, reject) => {
      worker.once("error", reject);
      worker.once("message", (m: JournalReady) => {
        worker.off("error", reject);
        if (m.ready) return resolve();
        worker.terminate();
        reject(new MagistralError(ErrorCode.UNAVAILABLE, `journal not opened: ${m.message}`));
      });
    });
    return new JournalThread(worker, log);
  }

  /**
   * Decodes, chains and writes one EVENTS batch; resolves with the events
   * written once they are durable (0 for a batch already applied), or -1
   * when the batch is unreadable.
   */
  append(bytes: Uint8Array, streamSeq: number): Promise<number> {
    // A copy of exactly the batch, moved to the worker: the message's bytes
    // are a view into the connection's read buffer (a Buffer, whose slice()
    // does not copy), which cloning would copy whole and moving would take away.
    const own = new Uint8Array(bytes);
    return this.call({ op: "append", bytes: own, streamSeq }, [own.buffer]) as Promise<number>;
  }

  /** The agency and service `id` was accepted from, if it was; undefined also when unreadable. */
  acceptance(id: string): Promise<Acceptance | undefined> {
    return new Promise((resolve) => {
      if (this.waitingIds.length === 0) setImmediate(() => this.readAcceptances());
      this.waitingIds.push({ id, resolve });
    });
  }

  trace(messageId: string): Promise<JournalRecord[]> {
    return this.call({ op: "trace", messageId }) as Promise<JournalRecord[]>;
  }

  search(query: JournalQuery): Promise<JournalPage> {
    return this.call({ op: "search", query }) as Promise<JournalPage>;
  }

  /** Moves records older than `olderThanMs` to archive files in `dir`; resolves with how many. */
  archive(dir: string, olderThanMs: number): Promise<number> {
    return this.call({ op: "archive", dir, olderThanMs }) as Promise<number>;
  }

  /** Waits for the writes queued before it, closes the store and stops the worker. */
  async close(): Promise<void> {
    if (this.closing) return;
    try {
      if (!this.failure) await this.call({ op: "close" });
    } finally {
      this.closing = true;
      await this.worker.terminate();
    }
  }

  private readAcceptances(): void {
    const waiting = this.waitingIds;
    this.waitingIds = [];
    this.call({ op: "acceptance", ids: waiting.map((w) => w.id) }).then(
      (found) => {
        for (const [i, w] of waiting.entries()) w.resolve((found as Acceptance[])[i]);
      },
      () => {
        for (const w of waiting) w.resolve(undefined);
      },
    );
  }

  private call(body: JournalRequestBody, transfer: ArrayBuffer[] = []): Promise<unknown> {
    if (this.failure || this.closing) {
      return Promise.reject(new MagistralError(ErrorCode.UNAVAILABLE, "journal store is closed"));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...body, id } as JournalRequest, transfer);
    });
  }

  private settle(res: JournalResponse): void {
    const waiting = this.pending.get(res.id);
    if (!waiting) return;
    this.pending.delete(res.id);
    if (res.ok) waiting.resolve(res.result);
    else {
      const code = res.error.code ?? ErrorCode.INTERNAL;
      waiting.reject(new MagistralError(code, res.error.message));
    }
  }

  /**
   * LIMITATION: a journal worker that dies (only a fault in the store's own
   * code does that) is not restarted: this node journals nothing more, its
   * EVENTS batches wait in the stream and duplicate checks see no earlier
   * acceptance, until the node is restarted.
   */
  private fail(err: Error): void {
    this.failure ??= err;
    this.log.error({ err }, "journal worker stopped; restart this node");
    const waiting = [...this.pending.values()];
    this.pending.clear();
    const gone = new MagistralError(ErrorCode.UNAVAILABLE, "journal worker stopped", {
      cause: err,
    });
    for (const w of waiting) w.reject(gone);
  }
}
