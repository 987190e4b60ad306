import { readdir } from "node:fs/promises";
import path from "node:path";
import rocks from "@nxtedition/rocksdb";
import { decodeValue } from "./envelope.ts";
import { ErrorCode, MagistralError } from "./errors.ts";
import { archiveDirOf, listArchiveFiles, readArchiveFile } from "./journal-archive.ts";
import {
  type ArchiveHead,
  decodeStored,
  type JournalHead,
  KEY,
  recordHash,
  type StoredRecord,
} from "./journal-store.ts";

/** One place where the chain does not hold. */
export interface ChainBreak {
  node: string;
  /** The record (or, for a file, its first record) where the chain breaks. */
  seq: number;
  /** An archive file name, or "journal" for RocksDB. */
  where: string;
  reason: string;
}

export interface VerifyReport {
  node: string;
  records: number;
  breaks: ChainBreak[];
}

/** Walks the chain record by record, remembering the last hash it trusts. */
class ChainWalker {
  records = 0;
  readonly breaks: ChainBreak[] = [];
  private expectedSeq = 1;
  prevHash: Uint8Array = new Uint8Array(0);
  prevDigest: Uint8Array = new Uint8Array(0);

  constructor(readonly node: string) {}

  check(record: StoredRecord, where: string): void {
    this.records++;
    if (record.seq !== this.expectedSeq) {
      this.fail(record.seq, where, `expected record ${this.expectedSeq}: records missing`);
    }
    if (!sameBytes(record.prev, this.prevHash)) {
      this.fail(record.seq, where, "link to the previous record broken");
    }
    if (!sameBytes(recordHash(record.prev, record.e), record.hash)) {
      this.fail(record.seq, where, "record altered: its hash does not match its content");
    }
    // Continue from what the record claims, so one alteration is reported once.
    this.prevHash = record.hash;
    this.expectedSeq = record.seq + 1;
  }

  /** Takes up the chain after a stretch that could not be checked. */
  resume(lastSeq: number, lastHash: Uint8Array): void {
    this.expectedSeq = lastSeq + 1;
    this.prevHash = lastHash;
  }

  get lastSeq(): number {
    return this.expectedSeq - 1;
  }

  fail(seq: number, where: string, reason: string): void {
    this.breaks.push({ node: this.node, seq, where, reason });
  }
}

/**
 * Verifies the hash chain of one node's journal offline: its archive files
 * oldest first, then the records left in RocksDB, then the head.
 *
 * LIMITATION: RocksDB admits one process, so a running broker's journal
 * cannot be verified in place; stop the node or verify a copy.
 */
export async function verifyJournal(journalDir: string, archiveDir: string, node: string) {
  const walker = new ChainWalker(node);
  await walkArchives(walker, archiveDir);
  const db = new rocks.RocksLevel(journalDir, { keyEncoding: "utf8", valueEncoding: "view" });
  await db.open();
  try {
    const [headBytes, archiveBytes] = await db.getMany([KEY.head, KEY.archive]);
    if (archiveBytes) checkArchiveHead(walker, decodeValue(archiveBytes) as ArchiveHead);
    for await (const [, value] of db.iterator({ gte: KEY.record(0), lt: KEY.recordEnd })) {
      const record = readStored(value, walker);
      if (record) walker.check(record, "journal");
    }
    if (headBytes) checkHead(walker, decodeValue(headBytes) as JournalHead);
  } finally {
    await db.close();
  }
  return { node, records: walker.records, breaks: walker.breaks } satisfies VerifyReport;
}

/** Verifies every node's journal under `<dataDir>/journal/<node>`. */
export async function verifyDataDir(dataDir: string): Promise<VerifyReport[]> {
  const root = path.join(dataDir, "journal");
  const entries = await readdir(root, { withFileTypes: true }).catch((err) => {
    throw new MagistralError(ErrorCode.NOT_FOUND, `no journal under ${dataDir}`, { cause: err });
  });
  const nodes = entries.filter((e) => e.isDirectory()).map((e) => e.name);
  const reports: VerifyReport[] = [];
  for (const node of nodes.sort()) {
    reports.push(await verifyJournal(path.join(root, node), archiveDirOf(dataDir, node), node));
  }
  return reports;
}

async function walkArchives(walker: ChainWalker, dir: string): Promise<void> {
  for (const name of await listArchiveFiles(dir)) {
    let file: Awaited<ReturnType<typeof readArchiveFile>>;
    try {
      file = await readArchiveFile(path.join(dir, name));
    } catch {
      walker.fail(walker.lastSeq + 1, name, "archive file unreadable");
      continue;
    }
    if (!sameBytes(file.header.prevDigest, walker.prevDigest)) {
      walker.fail(file.header.firstSeq, name, "archive file does not follow the one before");
    }
    for (const record of file.records) walker.check(record, name);
    walker.prevDigest = file.digest;
  }
}

function checkArchiveHead(walker: ChainWalker, head: ArchiveHead): void {
  if (!sameBytes(head.digest, walker.prevDigest)) {
    walker.fail(head.throughSeq, head.file, "newest archive file missing or replaced");
  }
  if (walker.lastSeq !== head.throughSeq) {
    walker.fail(walker.lastSeq + 1, "journal", `archive files end before ${head.throughSeq}`);
    walker.resume(head.throughSeq, head.hash);
  }
}

function checkHead(walker: ChainWalker, head: JournalHead): void {
  if (head.seq !== walker.lastSeq || !sameBytes(head.hash, walker.prevHash)) {
    walker.fail(walker.lastSeq, "journal", `head is record ${head.seq}: records removed or added`);
  }
}

function readStored(value: Uint8Array, walker: ChainWalker): StoredRecord | undefined {
  try {
    return decodeStored(value);
  } catch {
    walker.records++;
    walker.fail(walker.lastSeq + 1, "journal", "record unreadable");
    return undefined;
  }
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  return Buffer.compare(Buffer.from(a ?? []), Buffer.from(b ?? [])) === 0;
}
