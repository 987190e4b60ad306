import { createUser } from "@nats-io/nkeys";
import {
  AuthorizationError,
  connect,
  type NatsConnection,
  nkeyAuthenticator,
  PermissionViolationError,
  type Status,
} from "@nats-io/transport-node";
import { BUCKET, consumerName, queueStream, STREAM, subject } from "./subjects.ts";

/** One agency a probe connects as: its id and its nkey seed. */
export interface ProbeAgency {
  id: string;
  seed: Uint8Array;
}

/** Who probes and at whom: `self` tries to reach into `victim`'s subjects. */
export interface ProbeTarget {
  servers: string[];
  self: ProbeAgency;
  victim: string;
  /** A service the victim owns (or any id, when it owns none). */
  victimService: string;
}

export type ProbeKind = "publish" | "subscribe" | "login";

/** One forbidden action. `denied` is what must happen; anything else is a breach. */
export interface Probe {
  name: string;
  kind: ProbeKind;
  /** The subject tried, or the login described. */
  subject: string;
}

export interface ProbeOutcome {
  probe: Probe;
  denied: boolean;
  /** How it was denied, or what happened instead. */
  detail: string;
}

/** How long a denial may take to arrive after the server has seen the action. */
const DENIAL_WAIT_MS = 30;

/** Every forbidden action of `target.self` against `target.victim` and the bus. */
export function forbiddenActions(target: Omit<ProbeTarget, "servers" | "self"> & { self: string }) {
  const { self, victim, victimService: svc } = target;
  const pub = (name: string, subj: string): Probe => ({ name, kind: "publish", subject: subj });
  const sub = (name: string, subj: string): Probe => ({ name, kind: "subscribe", subject: subj });
  const replies = (agency: string) => `${STREAM.replies}.${consumerName.replies(agency)}`;
  return [
    pub("submit as another agency", subject.api(victim, "submit")),
    pub("publish into the request queue", subject.queue(svc)),
    pub("publish into its own replies stream", subject.reply(self)),
    pub("publish into another agency's replies", subject.reply(victim)),
    pub("forge journal events", subject.events("msg", "forged")),
    pub("publish another agency's notifications", subject.notify(victim)),
    pub("raise an operator alert", subject.alert("critical", svc)),
    pub("publish a dead letter", subject.deadletter(svc)),
    pub("call the admin API", subject.admin("agency.put")),
    pub("call a provider directly", subject.call(svc)),
    pub("inject into another agency's inbox", `${subject.inboxPrefix(victim)}.forged`),
    pub("create a stream", "$JS.API.STREAM.CREATE.MG_EVIL"),
    pub("delete the queue stream", `$JS.API.STREAM.DELETE.${queueStream(svc)}`),
    pub("purge the replies stream", `$JS.API.STREAM.PURGE.${STREAM.replies}`),
    pub("read another agency's replies", `$JS.API.CONSUMER.MSG.NEXT.${replies(victim)}`),
    pub("inspect another agency's consumer", `$JS.API.CONSUMER.INFO.${replies(victim)}`),
    pub("ack another agency's replies", `$JS.ACK.${replies(victim)}.1.1.1.1.0`),
    pub("create a consumer on replies", `$JS.API.CONSUMER.CREATE.${STREAM.replies}`),
    pub("create a durable on replies", `$JS.API.CONSUMER.DURABLE.CREATE.${STREAM.replies}.spy`),
    pub(
      "read another agency's notifications",
      `$JS.API.CONSUMER.MSG.NEXT.${STREAM.notify}.${consumerName.notify(victim)}`,
    ),
    pub(
      "ack a queued request",
      `$JS.ACK.${queueStream(svc)}.${consumerName.service(svc)}.1.1.1.1.0`,
    ),
    pub("read a KV bucket", `$JS.API.DIRECT.GET.KV_${BUCKET.agencies}`),
    pub("read a KV entry", `$JS.API.STREAM.MSG.GET.KV_${BUCKET.services}`),
    pub("write a KV bucket", `$KV.${BUCKET.services}.${svc}`),
    pub("ask the system account", "$SYS.REQ.SERVER.PING"),
    sub("read another agency's inbox", `${subject.inboxPrefix(victim)}.>`),
    sub("read every inbox", "_INBOX.>"),
    sub("snoop on the agency API", "mg.api.>"),
    sub("take another provider's calls", subject.call(svc)),
    sub("read another agency's replies subject", subject.reply(victim)),
    sub("snoop on the admin API", "mg.admin.>"),
    sub("watch a KV bucket", `$KV.${BUCKET.agencies}.>`),
    sub("read the request queue", "mg.queue.>"),
    sub("read everything", ">"),
    { name: "log in with an unregistered nkey", kind: "login", subject: "unregistered nkey" },
    { name: "log in without credentials", kind: "login", subject: "no credentials" },
  ] satisfies Probe[];
}

/**
 * What the same agency must still be able to do, so that a probe run that
 * is refused everything (a broken login, say) does not pass for isolation.
 */
export function allowedActions(self: string, roles: readonly string[]): Probe[] {
  const own: Probe[] = [
    { name: "use its own API", kind: "publish", subject: subject.api(self, "status") },
    { name: "read its own inbox", kind: "subscribe", subject: `${subject.inboxPrefix(self)}.>` },
  ];
  if (roles.includes("consumer")) {
    own.push({
      name: "read its own replies",
      kind: "publish",
      subject: `$JS.API.CONSUMER.INFO.${STREAM.replies}.${consumerName.replies(self)}`,
    });
  }
  return own;
}

/**
 * Tries every probe as `target.self` on one connection (a permission
 * violation does not close it) and reports each outcome.
 */
export async function runProbes(target: ProbeTarget, probes: Probe[]): Promise<ProbeOutcome[]> {
  const nc = await connectAs(target.servers, target.self);
  const denials: PermissionViolationError[] = [];
  void watchDenials(nc, denials);
  const out: ProbeOutcome[] = [];
  try {
    for (const probe of probes) out.push(await runProbe(nc, target, probe, denials));
  } finally {
    await nc.close();
  }
  return out;
}

/** Connects as an agency, with its own inbox prefix, as its adapter would. */
export function connectAs(servers: string[], agency: ProbeAgency): Promise<NatsConnection> {
  return connect({
    servers,
    name: `probe-${agency.id}`,
    inboxPrefix: subject.inboxPrefix(agency.id),
    authenticator: nkeyAuthenticator(agency.seed),
    maxReconnectAttempts: 0,
  });
}

async function watchDenials(nc: NatsConnection, into: PermissionViolationError[]) {
  for await (const status of nc.status() as AsyncIterable<Status>) {
    if (status.type === "error" && status.error instanceof PermissionViolationError) {
      into.push(status.error);
    }
  }
}

async function runProbe(
  nc: NatsConnection,
  target: ProbeTarget,
  probe: Probe,
  denials: PermissionViolationError[],
): Promise<ProbeOutcome> {
  try {
    if (probe.kind === "login") return await probeLogin(target, probe);
    if (probe.kind === "subscribe") return await probeSubscribe(nc, probe);
    return await probePublish(nc, probe, denials);
  } catch (err) {
    return { probe, denied: false, detail: `probe failed: ${(err as Error).message}` };
  }
}

async function probePublish(
  nc: NatsConnection,
  probe: Probe,
  denials: PermissionViolationError[],
): Promise<ProbeOutcome> {
  nc.publish(probe.subject, new Uint8Array([0xc0]));
  await nc.flush();
  await sleep(DENIAL_WAIT_MS);
  const denied = denials.some((d) => d.operation === "publish" && d.subject === probe.subject);
  return { probe, denied, detail: denied ? "publish permission violation" : "published" };
}

async function probeSubscribe(nc: NatsConnection, probe: Probe): Promise<ProbeOutcome> {
  let violation: Error | undefined;
  const sub = nc.subscribe(probe.subject, {
    callback: (err) => {
      if (err) violation = err;
    },
  });
  await nc.flush();
  await sleep(DENIAL_WAIT_MS);
  if (!sub.isClosed()) sub.unsubscribe();
  const denied = violation instanceof PermissionViolationError;
  return { probe, denied, detail: denied ? "subscription permission violation" : "subscribed" };
}

async function probeLogin(target: ProbeTarget, probe: Probe): Promise<ProbeOutcome> {
  const auth =
    probe.subject === "no credentials"
      ? {}
      : { authenticator: nkeyAuthenticator(createUser().getSeed()) };
  try {
    const nc = await connect({ servers: target.servers, maxReconnectAttempts: 0, ...auth });
    await nc.close();
    return { probe, denied: false, detail: "logged in" };
  } catch (err) {
    const denied = err instanceof AuthorizationError;
    return { probe, denied, detail: denied ? "authorization violation" : String(err) };
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
