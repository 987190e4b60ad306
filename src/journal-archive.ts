import { createHash } from "node:crypto";
import { mkdir, open, readdir, readFile, rename } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { gunzip, gzip } from "node:zlib";
import { decodeValue, encodeValue } from "./envelope.ts";
import type { MessageEvent } from "./events.ts";
import type { JournalStore, StoredRecord } from "./journal-store.ts";

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/** The first part of every archive file: where it sits in the chain. */
export interface ArchiveHeader {
  v: 1;
  /** SHA-256 of the archive file before this one; empty for the first. */
  prevDigest: Uint8Array;
  firstSeq: number;
  lastSeq: number;
  createdAt: number;
}

export interface ArchiveFile {
  header: ArchiveHeader;
  records: StoredRecord[];
}

export interface ArchiveOptions {
  /** Records whose event is older than this are archived. */
  olderThanMs: number;
  /** Records per archive file, at most. */
  maxRecordsPerFile?: number;
  now?: number;
}

const ARCHIVE_SUFFIX = ".mgj.gz";
const DEFAULT_RECORDS_PER_FILE = 50_000;

/** Where the archive files of one node's journal are kept: beside the RocksDB journals. */
export function archiveDirOf(dataDir: string, node: string): string {
  return path.join(dataDir, "journal-archive", node);
}

export function sha256(bytes: Uint8Array): Uint8Array {
  return createHash("sha256").update(bytes).digest();
}

/**
 * Moves the oldest records, those older than `olderThanMs`, out of RocksDB
 * into gzip files of MessagePack, oldest first. Each file names the digest
 * of the one before, and RocksDB keeps the digest of the newest, so the
 * chain runs unbroken from the first archived record to the journal's head.
 * A file is fsynced and renamed into place before its records are removed.
 * Returns how many records were archived.
 *
 * LIMITATION: archived records are out of `trace` and `journal search`;
 * reading them takes the files themselves (gzip of MessagePack), and the
 * API's duplicate check by message id no longer sees them.
 */
export async function archiveJournal(
  store: JournalStore,
  dir: string,
  opts: ArchiveOptions,
): Promise<number> {
  const cutoffMs = (opts.now ?? Date.now()) - opts.olderThanMs;
  const perFile = opts.maxRecordsPerFile ?? DEFAULT_RECORDS_PER_FILE;
  await mkdir(dir, { recursive: true });
  let archived = 0;
  for (;;) {
    const records = await oldRecords(store, cutoffMs, perFile);
    if (records.length === 0) return archived;
    await archiveChunk(store, dir, records);
    archived += records.length;
  }
}

async function oldRecords(store: JournalStore, cutoffMs: number, max: number) {
  const records: StoredRecord[] = [];
  for await (const stored of store.stored(store.firstSeq)) {
    const event = decodeValue(stored.e) as MessageEvent;
    // Only a prefix is archived, so the chain stays whole on both sides of the cut.
    if (event.at >= cutoffMs || records.length >= max) break;
    records.push(stored);
  }
  return records;
}

async function archiveChunk(store: JournalStore, dir: string, records: StoredRecord[]) {
  const first = records[0]!;
  const last = records[records.length - 1]!;
  const header: ArchiveHeader = {
    v: 1,
    prevDigest: store.archiveHead?.digest ?? new Uint8Array(0),
    firstSeq: first.seq,
    lastSeq: last.seq,
    createdAt: Date.now(),
  };
  const bytes = await gzipAsync(encodeValue({ header, records }));
  const file = archiveFileName(first.seq, last.seq);
  await writeDurably(path.join(dir, file), bytes);
  await store.removeArchived(records, {
    throughSeq: last.seq,
    hash: last.hash,
    digest: sha256(bytes),
    file,
  });
}

function archiveFileName(firstSeq: number, lastSeq: number): string {
  const pad = (n: number) => n.toString().padStart(12, "0");
  return `${pad(firstSeq)}-${pad(lastSeq)}${ARCHIVE_SUFFIX}`;
}

async function writeDurably(file: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${file}.tmp`;
  const handle = await open(tmp, "w");
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, file);
}

/** Archive file names of a directory, oldest first; none when it does not exist. */
export async function listArchiveFiles(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => n.endsWith(ARCHIVE_SUFFIX)).sort();
}

/** Reads one archive file, with the digest of its bytes as they are on disk. */
export async function readArchiveFile(file: string): Promise<ArchiveFile & { digest: Uint8Array }> {
  const bytes = await readFile(file);
  const content = decodeValue(await gunzipAsync(bytes)) as ArchiveFile;
  return { ...content, digest: sha256(bytes) };
}
