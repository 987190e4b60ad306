import type { ExecutionContext } from "ava";
import {
  type BrokerProcess,
  type BrokerProcessSpec,
  startBrokerProcess as start,
} from "../../cluster/broker-process.ts";

export type { BrokerProcess };

/** A broker node as a child process (what `npm start` runs), killed at teardown. */
export async function startBrokerProcess(
  t: ExecutionContext,
  spec: BrokerProcessSpec,
): Promise<BrokerProcess> {
  const broker = await start(spec);
  t.teardown(() => broker.kill());
  return broker;
}
