// Reads a nats-server's HTTP monitoring endpoints (/varz, /jsz, /healthz).
// Each server answers for itself, so a node's own view of a stream can be
// compared with the others'.
import { monitorUrl, type NatsNodeSpec } from "./topology.ts";

/** One server as its monitoring port reports it. */
export interface NatsNodeHealth {
  name: string;
  monitorUrl: string;
  /** The monitoring port answered. */
  up: boolean;
  /** /healthz said ok: JetStream is current with the meta leader and its streams. */
  healthy: boolean;
  healthError?: string;
  version?: string;
  uptime?: string;
  connections?: number;
  memBytes?: number;
  cpuPercent?: number;
  /** This server's idea of the JetStream meta leader. */
  metaLeader?: string;
  streams?: number;
  consumers?: number;
  messages?: number;
  storeBytes?: number;
  apiErrors?: number;
}

/** One stream's state as stored on one server. */
export interface StreamView {
  node: string;
  stream: string;
  messages: number;
  firstSeq: number;
  lastSeq: number;
  leader?: string;
}

const DEFAULT_TIMEOUT_MS = 2_000;

/** Asks one server's monitoring port about itself; never rejects. */
export async function natsNodeHealth(
  node: NatsNodeSpec,
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<NatsNodeHealth> {
  const base = monitorUrl(node);
  const health: NatsNodeHealth = { name: node.name, monitorUrl: base, up: false, healthy: false };
  const varz = await getJson<Varz>(`${base}/varz`, timeoutMs).catch(() => undefined);
  if (!varz) return health;
  const [jsz, healthz] = await Promise.all([
    getJson<Jsz>(`${base}/jsz`, timeoutMs).catch(() => undefined),
    getJson<{ status?: string; error?: string }>(`${base}/healthz`, timeoutMs, true).catch(
      (err: Error) => ({ status: "error", error: err.message }),
    ),
  ]);
  return {
    ...health,
    up: true,
    healthy: healthz.status === "ok",
    healthError: healthz.status === "ok" ? undefined : healthz.error,
    version: varz.version,
    uptime: varz.uptime,
    connections: varz.connections,
    memBytes: varz.mem,
    cpuPercent: varz.cpu,
    metaLeader: jsz?.meta_cluster?.leader || undefined,
    streams: jsz?.streams,
    consumers: jsz?.consumers,
    messages: jsz?.messages,
    storeBytes: jsz?.bytes,
    apiErrors: jsz?.api?.errors,
  };
}

/**
 * Every stream this server holds a replica of, with the state of its own
 * copy. Rejects when the server does not answer.
 */
export async function streamViews(
  node: NatsNodeSpec,
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<StreamView[]> {
  const url = `${monitorUrl(node)}/jsz?accounts=true&streams=true`;
  const jsz = await getJson<Jsz>(url, timeoutMs);
  return (jsz.account_details ?? []).flatMap((account) =>
    (account.stream_detail ?? []).map((s) => ({
      node: node.name,
      stream: s.name,
      messages: s.state?.messages ?? 0,
      firstSeq: s.state?.first_seq ?? 0,
      lastSeq: s.state?.last_seq ?? 0,
      leader: s.cluster?.leader,
    })),
  );
}

/**
 * The streams whose copy on `name` is not current, judged by each
 * stream's leader (a follower's view of its peers is stale). A stream with
 * no leader in sight counts as not current. Rejects when no server answers.
 */
export async function streamsBehindOn(
  nodes: NatsNodeSpec[],
  name: string,
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<string[]> {
  const url = (n: NatsNodeSpec) => `${monitorUrl(n)}/jsz?accounts=true&streams=true`;
  const answers = await Promise.all(
    nodes.map((n) =>
      getJson<Jsz>(url(n), timeoutMs).then(
        (jsz) => ({ node: n.name, jsz }),
        () => undefined,
      ),
    ),
  );
  const seen = answers.filter((a) => a !== undefined);
  if (seen.length === 0) throw new Error("no NATS node answers on its monitoring port");
  const streams = new Set<string>();
  const current = new Set<string>();
  for (const { node, jsz } of seen) {
    for (const s of (jsz.account_details ?? []).flatMap((a) => a.stream_detail ?? [])) {
      streams.add(s.name);
      // Only the leader's list of its followers says who is current.
      if (s.cluster?.leader !== node) continue;
      const mine = s.cluster.replicas?.find((r) => r.name === name);
      if (node === name || mine?.current) current.add(s.name);
    }
  }
  return [...streams].filter((s) => !current.has(s)).sort();
}

/**
 * Every node's copy of every stream, once the copies agree on last
 * sequence and message count (replication trails writes for a moment), or
 * the last views read when `timeoutMs` passes, with the streams that differ.
 */
export async function settledStreamViews(
  nodes: NatsNodeSpec[],
  replicas: number,
  timeoutMs = 15_000,
): Promise<{ views: StreamView[]; differing: string[] }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const views = (await Promise.all(nodes.map((n) => streamViews(n)))).flat();
    const differing = copiesThatDiffer(views, replicas);
    if (differing.length === 0 || Date.now() > deadline) return { views, differing };
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Streams with fewer copies than `replicas`, or copies that differ, as
 * `name node:last/count...`.
 */
export function copiesThatDiffer(views: StreamView[], replicas: number): string[] {
  const byStream = new Map<string, StreamView[]>();
  for (const v of views) byStream.set(v.stream, [...(byStream.get(v.stream) ?? []), v]);
  const out: string[] = [];
  for (const [stream, copies] of byStream) {
    const first = copies[0]!;
    const same = copies.every((c) => c.lastSeq === first.lastSeq && c.messages === first.messages);
    if (same && copies.length === replicas) continue;
    out.push(`${stream} ${copies.map((c) => `${c.node}:${c.lastSeq}/${c.messages}`).join(" ")}`);
  }
  return out.sort();
}

/** The meta leader every answering server agrees on, or undefined. */
export async function agreedMetaLeader(
  nodes: NatsNodeSpec[],
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<string | undefined> {
  const health = await Promise.all(nodes.map((n) => natsNodeHealth(n, timeoutMs)));
  const up = health.filter((h) => h.up);
  const leader = up[0]?.metaLeader;
  return leader && up.every((h) => h.metaLeader === leader) ? leader : undefined;
}

/**
 * GETs a JSON document. With `anyStatus`, a non-2xx answer is returned
 * as its body (/healthz answers 503 with the reason).
 */
async function getJson<T>(url: string, timeoutMs: number, anyStatus = false): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok && !anyStatus) throw new Error(`${url}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

interface Varz {
  version?: string;
  uptime?: string;
  connections?: number;
  mem?: number;
  cpu?: number;
}

interface Jsz {
  streams?: number;
  consumers?: number;
  messages?: number;
  bytes?: number;
  api?: { errors?: number };
  meta_cluster?: { leader?: string };
  account_details?: {
    stream_detail?: {
      name: string;
      cluster?: { leader?: string; replicas?: { name: string; current?: boolean }[] };
      state?: { messages?: number; first_seq?: number; last_seq?: number };
    }[];
  }[];
}
