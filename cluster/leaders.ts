// Who leads what in the JetStream cluster, and moving a stream's leader:
// failover tests kill the node that leads both the meta group and a stream.
import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { agreedMetaLeader } from "./monitor.ts";
import { sleep } from "./processes.ts";
import type { NatsNodeSpec } from "./topology.ts";

/** One stream (a KV bucket is stream `KV_<bucket>`) and its replicas as the leader reports them. */
export interface StreamPlacement {
  stream: string;
  leader?: string;
  replicas: {
    name: string;
    current: boolean;
    offline: boolean;
    lagOps: number;
    activeMs: number;
  }[];
  messages: number;
  lastSeq: number;
  consumers: number;
}

/** Every stream of the account with its leader and followers. */
export async function streamPlacements(jsm: JetStreamManager): Promise<StreamPlacement[]> {
  const out: StreamPlacement[] = [];
  for await (const info of jsm.streams.list()) {
    out.push({
      stream: info.config.name,
      leader: info.cluster?.leader,
      replicas: (info.cluster?.replicas ?? []).map((r) => ({
        name: r.name,
        current: r.current,
        offline: r.offline ?? false,
        lagOps: r.lag ?? 0,
        activeMs: Math.round((r.active ?? 0) / 1_000_000),
      })),
      messages: info.state.messages,
      lastSeq: info.state.last_seq,
      consumers: info.state.consumer_count,
    });
  }
  return out.sort((a, b) => a.stream.localeCompare(b.stream));
}

/**
 * Asks a stream's leader to step down until `wanted` leads it (each step
 * down elects one of the followers at random; 24 tries leave about one
 * chance in ten million of never landing on `wanted`).
 * @returns whether `wanted` leads the stream in the end
 */
export async function moveStreamLeader(
  nc: NatsConnection,
  jsm: JetStreamManager,
  stream: string,
  wanted: string,
  attempts = 24,
): Promise<boolean> {
  for (let i = 0; i < attempts; i++) {
    const leader = (await jsm.streams.info(stream)).cluster?.leader;
    if (leader === wanted) return true;
    await nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${stream}`, undefined, { timeout: 5_000 });
    await waitForNewLeader(jsm, stream, leader);
  }
  return (await jsm.streams.info(stream)).cluster?.leader === wanted;
}

async function waitForNewLeader(jsm: JetStreamManager, stream: string, old?: string) {
  for (let i = 0; i < 50; i++) {
    const leader = await jsm.streams
      .info(stream)
      .then((s) => s.cluster?.leader)
      .catch(() => undefined);
    if (leader && leader !== old) return;
    await sleep(100);
  }
}

/**
 * After `lost` went down: how long until the other nodes agree on a meta
 * leader other than it and every stream in `streams` has a leader other
 * than it. Polls every 100 ms; resolves with the elapsed milliseconds.
 */
export async function timeToFailover(
  nodes: NatsNodeSpec[],
  jsm: JetStreamManager,
  lost: string,
  streams: string[],
  timeoutMs = 30_000,
): Promise<{ metaMs: number; streamsMs: number }> {
  const started = performance.now();
  const survivors = nodes.filter((n) => n.name !== lost);
  let metaMs: number | undefined;
  while (performance.now() - started < timeoutMs) {
    if (metaMs === undefined) {
      const meta = await agreedMetaLeader(survivors, 500);
      if (meta && meta !== lost) metaMs = performance.now() - started;
    }
    if (metaMs !== undefined && (await allLedElsewhere(jsm, streams, lost))) {
      return { metaMs: Math.round(metaMs), streamsMs: Math.round(performance.now() - started) };
    }
    await sleep(100);
  }
  return { metaMs: Number.NaN, streamsMs: Number.NaN };
}

async function allLedElsewhere(jsm: JetStreamManager, streams: string[], lost: string) {
  const leaders = await Promise.all(
    streams.map((s) =>
      jsm.streams
        .info(s)
        .then((i) => i.cluster?.leader)
        .catch(() => undefined),
    ),
  );
  return leaders.every((l) => l !== undefined && l !== lost);
}
