// The journal's RocksDB, owned by a worker thread. @nxtedition/rocksdb
// writes a batch synchronously on the calling thread (with its fsync), which
// on the broker's event loop was a quarter of its time at saturation and a
// cause of its latency tail. Here the store decodes, chains and writes
// event batches, and answers reads, while the broker's thread routes.

import { parentPort, workerData } from "node:worker_threads";
import { MagistralError } from "./errors.ts";
import { decodeEventBatchBytes } from "./events.ts";
import { archiveJournal } from "./journal-archive.ts";
import type { JournalRequest, JournalResponse } from "./journal-protocol.ts";
import { searchJournal } from "./journal-search.ts";
import { JournalStore } from "./journal-store.ts";

const port = parentPort!;
const { dir } = workerData as { dir: string };

async function handle(store: JournalStore, req: JournalRequest): Promise<unknown> {
  switch (req.op) {
    case "append": {
      const events = decodeEventBatchBytes(req.bytes);
      if (!events) return -1;
      return store.append(events, req.streamSeq);
    }
    case "acceptance":
      return store.acceptances(req.ids);
    case "trace":
      return store.trace(req.messageId);
    case "search":
      return searchJournal(store, req.query);
    case "archive":
      return archiveJournal(store, req.dir, { olderThanMs: req.olderThanMs });
    case "close":
      await store.close();
      return null;
  }
}

function reply(id: number, work: Promise<unknown>): void {
  work.then(
    (result) => port.postMessage({ id, ok: true, result } satisfies JournalResponse),
    (err) => {
      const code = err instanceof MagistralError ? err.code : undefined;
      const error = { code, message: err instanceof Error ? err.message : String(err) };
      port.postMessage({ id, ok: false, error } satisfies JournalResponse);
    },
  );
}

JournalStore.open(dir).then(
  (store) => {
    port.on("message", (req: JournalRequest) => reply(req.id, handle(store, req)));
    port.postMessage({ ready: true });
  },
  (err) => port.postMessage({ ready: false, message: String(err) }),
);
