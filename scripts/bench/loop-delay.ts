// Preloaded into the broker child by the benchmark (`node --import`): every
// second it writes the event loop's delay over that second to stderr, so a
// latency tail can be told apart from a blocked loop. Not used otherwise.
import { monitorEventLoopDelay } from "node:perf_hooks";

const histogram = monitorEventLoopDelay({ resolution: 5 });
histogram.enable();
const timer = setInterval(() => {
  const ms = (ns: number) => Math.round(ns / 10_000) / 100;
  const line = {
    p50Ms: ms(histogram.percentile(50)),
    p99Ms: ms(histogram.percentile(99)),
    maxMs: ms(histogram.max),
  };
  process.stderr.write(`bench-loop-delay ${JSON.stringify(line)}\n`);
  histogram.reset();
}, 1_000);
timer.unref();
