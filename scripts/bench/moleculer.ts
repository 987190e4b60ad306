// The peer: Moleculer remote calls through its NATS transporter on the same
// nats-server. Moleculer's transporter needs the `nats` v2 client, which the
// rest of the project does not use; both stay in this file only.
import { payloadText } from "./measure.ts";
import { benchCalls, type CallBenchResult, type PhasePlan } from "./runner.ts";

export interface MoleculerResult extends CallBenchResult {
  payloadBytes: number;
  version: string;
}

/**
 * Two Moleculer brokers in this process, a caller and the node serving
 * `bench.echo`, with different node ids, so every call crosses NATS (the
 * transporter's request packet out, the response packet back) as a remote
 * call. JSON serializer (Moleculer's default), no caching, no retries.
 */
export async function benchMoleculer(
  url: string,
  natsPid: number,
  payloads: number[],
  plan: PhasePlan,
  log: (line: string) => void,
): Promise<MoleculerResult[]> {
  const { ServiceBroker } = await import("moleculer");
  const common = {
    namespace: "bench",
    transporter: { type: "NATS" as const, options: { url } },
    logger: false,
    metrics: false,
    tracing: false,
    requestTimeout: 30_000,
    // The peer's own disconnect detection would otherwise log and mark nodes down under load.
    heartbeatTimeout: 60,
  };
  const server = new ServiceBroker({ ...common, nodeID: "bench-server" });
  server.createService({
    name: "bench",
    actions: { echo: (ctx: { params: { payload: string } }) => ctx.params.payload },
  });
  const caller = new ServiceBroker({ ...common, nodeID: "bench-caller" });
  await server.start();
  await caller.start();
  try {
    await caller.waitForServices(["bench"], 30_000);
    const results: MoleculerResult[] = [];
    for (const payloadBytes of payloads) {
      log(`  moleculer remote call, ${payloadBytes} B`);
      const params = { payload: payloadText(payloadBytes) };
      const call = () => caller.call("bench.echo", params);
      const result = await benchCalls(call, plan, { natsPid }, log);
      results.push({ payloadBytes, version: ServiceBroker.MOLECULER_VERSION, ...result });
    }
    return results;
  } finally {
    await caller.stop();
    await server.stop();
  }
}
