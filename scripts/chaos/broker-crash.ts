import path from "node:path";
import {
  brokerProcess,
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
 * The broker node is killed with SIGKILL mid-run, calls in flight, and
 * started again: accepted requests are delivered by the new process.
 */
export async function run(opts: ChaosOptions): Promise<ChaosResult> {
  const { dir, cleanup } = runDir();
  const nats = await startNats(dir);
  const dataDir = path.join(dir, "broker");
  let broker = await brokerProcess(nats.url, "chaos1", dataDir);
  const { admin, provider, consumer } = await setUp(nats.url, "pension-check");
  try {
    provider.provide("pension-check", async (req) => {
      await sleep(20);
      return `<СНИЛС id="${req.id}" valid="true"/>`;
    });
    const load = new Load(consumer, "pension-check");
    const half = Math.round(opts.durationMs / 2);
    await withProgress(load, opts.log, async () => {
      await load.start(opts.rate);
      await sleep(half);
      opts.log("broker node killed (SIGKILL)");
      await broker.kill("SIGKILL");
      await sleep(1_000);
      broker = await brokerProcess(nats.url, "chaos1", dataDir);
      opts.log("broker node restarted");
      await sleep(half);
      load.stop();
    });
    return await load.drain(60_000, opts.log);
  } finally {
    await Promise.all([provider.close(), consumer.close(), admin.close()]);
    await broker.kill("SIGTERM");
    await nats.stop();
    cleanup();
  }
}
