import path from "node:path";
import { BrokerNode } from "../../src/broker.ts";
import { rootLogger } from "../../src/logger.ts";
import {
  type ChaosOptions,
  type ChaosResult,
  Load,
  runDir,
  setUp,
  sleep,
  startNats,
  withProgress,
} from "./harness.ts";

/**
 * The provider's adapter goes away for a third of the run and comes back:
 * requests wait in the queue, are retried, and are all answered once.
 */
export async function run(opts: ChaosOptions): Promise<ChaosResult> {
  const { dir, cleanup } = runDir();
  const nats = await startNats(dir);
  const broker = await BrokerNode.start({
    nodeId: "chaos1",
    nats: { servers: nats.url },
    dataDir: path.join(dir, "broker"),
    log: rootLogger.child({ chaos: "provider-outage" }),
  });
  const { admin, provider, consumer } = await setUp(nats.url, "egrul-extract");
  try {
    const serve = () =>
      provider.provide(
        "egrul-extract",
        (req) => `<Выписка id="${req.id}" attempt="${req.attempt}"/>`,
      );
    let subs = serve();
    const load = new Load(consumer, "egrul-extract");
    const third = Math.round(opts.durationMs / 3);
    await withProgress(load, opts.log, async () => {
      await load.start(opts.rate);
      await sleep(third);
      opts.log("provider adapter stops");
      for (const s of subs) s.unsubscribe();
      await sleep(third);
      opts.log("provider adapter is back");
      subs = serve();
      await sleep(third);
      load.stop();
    });
    return await load.drain(60_000, opts.log);
  } finally {
    await Promise.all([provider.close(), consumer.close(), admin.close()]);
    await broker.close();
    await nats.stop();
    cleanup();
  }
}
