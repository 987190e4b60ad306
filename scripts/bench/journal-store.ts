// The journal store alone: how fast RocksDB takes EVENTS batches of
// realistic events (four steps a message), in CPU per event, and what a
// message costs on disk right after writing. No NATS: this is the part of a
// broker's journal work that does not depend on the bus.
// `npx tsx scripts/bench/journal-store.ts [--messages 25600] [--batch 256]`
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Command } from "commander";
import { encodeValue } from "../../src/envelope.ts";
import { decodeEventBatchBytes, type MessageEvent } from "../../src/events.ts";
import { JournalStore } from "../../src/journal-store.ts";

const STEPS = ["accepted", "attempt", "delivered", "responded"] as const;

function batchOf(firstEvent: number, size: number): Uint8Array {
  const events: MessageEvent[] = [];
  for (let n = firstEvent; n < firstEvent + size; n++) {
    events.push({
      type: STEPS[n % STEPS.length]!,
      id: `bench-${Math.floor(n / STEPS.length)}-0123456789abcdef`,
      at: Date.now(),
      node: "node-1",
      service: "bench-echo",
      agency: "bench-consumer",
      provider: "bench-provider",
      attempt: 1,
      bytes: 256,
      latencyMs: 3,
    });
  }
  return encodeValue(events);
}

async function main(): Promise<void> {
  const opts = new Command()
    .option("--messages <n>", "messages journaled", "25600")
    .option("--batch <n>", "events per EVENTS batch", "256")
    .parse()
    .opts<{ messages: string; batch: string }>();
  const events = Number(opts.messages) * STEPS.length;
  const batchSize = Number(opts.batch);
  const batches: Uint8Array[] = [];
  for (let n = 0; n < events; n += batchSize) batches.push(batchOf(n, batchSize));

  const dir = mkdtempSync(path.join(os.tmpdir(), "mg-journal-bench-"));
  try {
    const store = await JournalStore.open(dir);
    const cpu0 = process.cpuUsage();
    const started = performance.now();
    let streamSeq = 0;
    for (const bytes of batches) await store.append(decodeEventBatchBytes(bytes)!, ++streamSeq);
    const elapsedMs = performance.now() - started;
    const cpu = process.cpuUsage(cpu0);
    await store.close();
    const diskBytes = Number(execFileSync("du", ["-sb", dir]).toString().split("\t")[0]);
    const perSec = Math.round((events / elapsedMs) * 1_000);
    const cpuUsPerEvent = ((cpu.user + cpu.system) / events).toFixed(1);
    const bytesPerMsg = Math.round(diskBytes / Number(opts.messages));
    console.log(
      `journal-store: ${events} events in batches of ${batchSize}: ${perSec} events/s, ` +
        `${cpuUsPerEvent} µs CPU per event, ${bytesPerMsg} B on disk per message`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
