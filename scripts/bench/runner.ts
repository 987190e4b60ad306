// Runs one request/reply system through the same phases: warm-up,
// saturation (closed loop), then each fixed offered rate (open loop), with
// the CPU spent per message by each process that took part.

import type { LoopDelay } from "./broker.ts";
import {
  type Call,
  type CpuCost,
  connTraffic,
  cpuMeter,
  fixedRate,
  type RateResult,
  type SaturationResult,
  saturate,
  trafficPer,
} from "./measure.ts";

/** How long and how hard each phase runs. */
export interface PhasePlan {
  /** Calls in flight at saturation. */
  inFlight: number;
  saturationMs: number;
  warmupMs: number;
  /** Offered loads for the latency phases, requests per second. */
  ratesPerSec: number[];
  rateMs: number;
  /**
   * Past this many calls waiting, an open-loop phase sheds load instead of
   * queueing without end.
   */
  maxInFlight: number;
}

export interface Processes {
  natsPid: number;
  /** A broker in a child process, so its CPU is measured apart from the bench's. */
  brokerPid?: number;
  /**
   * nats-server's monitoring URL and the name of the broker's connection,
   * to count its messages.
   */
  monitor?: { url: string; connection: string };
  /** The broker's event loop delay since a performance.now() mark. */
  loopDelay?: (since: number) => LoopDelay;
}

export type Measured<T> = T & { cpu: CpuCost; brokerLoopDelay?: LoopDelay };

export interface CallBenchResult {
  saturation: Measured<SaturationResult> & {
    /** NATS messages and bytes of the broker's connection per call, at saturation. */
    brokerTraffic?: ReturnType<typeof trafficPer>;
  };
  rates: Measured<RateResult>[];
}

export async function benchCalls(
  call: Call,
  plan: PhasePlan,
  procs: Processes,
  log: (line: string) => void,
): Promise<CallBenchResult> {
  await saturate(call, { inFlight: plan.inFlight, durationMs: plan.warmupMs });

  const traffic = () =>
    procs.monitor ? connTraffic(procs.monitor.url, procs.monitor.connection) : undefined;
  const traffic0 = await traffic();
  let phaseStart = performance.now();
  let meter = cpuMeter(procs.natsPid, procs.brokerPid);
  const sat = await saturate(call, { inFlight: plan.inFlight, durationMs: plan.saturationMs });
  const saturation: CallBenchResult["saturation"] = {
    ...sat,
    cpu: meter.per(sat.ops),
    brokerLoopDelay: procs.loopDelay?.(phaseStart),
  };
  const traffic1 = await traffic();
  if (traffic0 && traffic1) saturation.brokerTraffic = trafficPer(traffic0, traffic1, sat.ops);
  const bt = saturation.brokerTraffic;
  const perCall = bt
    ? `, broker publishes ${bt.inMsgs} and receives ${bt.outMsgs} NATS msgs per call`
    : "";
  log(`    saturation: ${Math.round(sat.opsPerSec)}/s, p99 ${sat.latency.p99Ms} ms${perCall}`);

  const rates: Measured<RateResult>[] = [];
  for (const ratePerSec of plan.ratesPerSec) {
    phaseStart = performance.now();
    meter = cpuMeter(procs.natsPid, procs.brokerPid);
    const r = await fixedRate(call, {
      ratePerSec,
      durationMs: plan.rateMs,
      maxInFlight: plan.maxInFlight,
    });
    const loop = procs.loopDelay?.(phaseStart);
    rates.push({ ...r, cpu: meter.per(r.ops), brokerLoopDelay: loop });
    log(
      `    @${ratePerSec}/s: achieved ${Math.round(r.achievedPerSec)}/s, ` +
        `p50 ${r.latency.p50Ms} p99 ${r.latency.p99Ms} ms, shed ${r.shed}` +
        (loop
          ? `; broker loop delay max ${loop.maxMs} ms, ` +
            `${loop.secondsOver25Ms}/${loop.seconds} s over 25 ms`
          : ""),
    );
  }
  return { saturation, rates };
}
