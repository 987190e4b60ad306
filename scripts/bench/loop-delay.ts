// Preloaded into the broker child by the benchmark (`node --import`): every
// second it writes the event loop's delay over that second to stderr, so a
// latency tail can be told apart from a blocked loop, and what its memory is
// made of (V8's heap, buffers, the rest: RocksDB, code, the libraries' own).
// Not used otherwise.
// Worker threads inherit `--import`: the journal worker reports its own
// heap under another prefix, so it is not taken for the broker's loop.

import { monitorEventLoopDelay } from "node:perf_hooks";
import { getHeapStatistics } from "node:v8";
import { isMainThread } from "node:worker_threads";

if (isMainThread) report();
else reportWorkerHeap();

function reportWorkerHeap(): void {
  const timer = setInterval(() => {
    const heap = getHeapStatistics();
    const mib = (bytes: number) => Math.round(bytes / 1_048_576);
    const line = { heapTotal: mib(heap.total_heap_size), heapUsed: mib(heap.used_heap_size) };
    process.stderr.write(`bench-worker-heap ${JSON.stringify(line)}\n`);
  }, 1_000);
  timer.unref();
}

function report(): void {
  const histogram = monitorEventLoopDelay({ resolution: 5 });
  histogram.enable();
  const timer = setInterval(() => {
    const ms = (ns: number) => Math.round(ns / 10_000) / 100;
    const mib = (bytes: number) => Math.round(bytes / 1_048_576);
    const memory = process.memoryUsage();
    const line = {
      p50Ms: ms(histogram.percentile(50)),
      p99Ms: ms(histogram.percentile(99)),
      maxMs: ms(histogram.max),
      memoryMiB: {
        rss: mib(memory.rss),
        heapTotal: mib(memory.heapTotal),
        heapUsed: mib(memory.heapUsed),
        external: mib(memory.external),
        arrayBuffers: mib(memory.arrayBuffers),
      },
    };
    process.stderr.write(`bench-loop-delay ${JSON.stringify(line)}\n`);
    histogram.reset();
  }, 1_000);
  timer.unref();
}
