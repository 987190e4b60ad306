import type { ErrorCode } from "./errors.ts";
import type { JournalQuery } from "./journal-search.ts";

/** What the broker's thread asks of the journal's worker thread. */
export type JournalRequest = { id: number } & (
  | { op: "append"; bytes: Uint8Array; streamSeq: number }
  | { op: "acceptance"; ids: string[] }
  | { op: "trace"; messageId: string }
  | { op: "search"; query: JournalQuery }
  | { op: "archive"; dir: string; olderThanMs: number }
  | { op: "close" }
);

/** Distributes `Omit` over a union, so each request keeps its own fields. */
type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;
export type JournalRequestBody = WithoutId<JournalRequest>;

/** The worker's answer to the request with the same id. */
export type JournalResponse =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: { code?: ErrorCode; message: string } };

/** The worker's first message: its store is open, or why it is not. */
export type JournalReady = { ready: true } | { ready: false; message: string };
