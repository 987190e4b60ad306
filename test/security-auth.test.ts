import { readFileSync } from "node:fs";
import path from "node:path";
import { Kvm } from "@nats-io/kv";
import { PermissionViolationError } from "@nats-io/transport-node";
import test from "ava";
import { permissionsOf } from "../src/auth.ts";
import { applyAuthorization, authInclude } from "../src/auth-sync.ts";
import { encodeValue } from "../src/envelope.ts";
import { connectAs } from "../src/isolation-probes.ts";
import type { Agency, ServiceDef } from "../src/registry.ts";
import { BUCKET } from "../src/subjects.ts";
import { waitFor } from "./helpers/bus.ts";
import { tempDir } from "./helpers/nats.ts";
import { type SecureBus, startSecureBus } from "./helpers/secure-bus.ts";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/**
 * Registers fns as the provider of an echo service and mfc as a consumer,
 * each logging in with its nkey, and sends "hello" across: the answer.
 */
async function echoAcross(bus: SecureBus) {
  await bus.addAgency("fns", ["provider"]);
  await bus.addAgency("mfc", ["consumer"]);
  await bus.admin.call("service.put", { service: { id: "echo", owner: "fns" } });
  await waitFor(() => bus.broker.view.get("echo") !== undefined);
  await bus.settled();
  const fns = await bus.connect("fns");
  const mfc = await bus.connect("mfc");
  fns.provide("echo", (req) => `echo:${text(req.payload)}`);
  return mfc.request("echo", "hello", { timeoutMs: 15_000 });
}

test("agencies log in with their nkeys and a request crosses the bus under authorization", async (t) => {
  const bus = await startSecureBus((fn) => t.teardown(fn));
  const answer = await echoAcross(bus);

  t.is(text(answer.payload), "echo:hello");
  t.is(answer.provider, "fns");
});

test("under authorization a consumer reads the status events of its own messages", async (t) => {
  const bus = await startSecureBus((fn) => t.teardown(fn));
  await bus.addAgency("fns", ["provider"]);
  await bus.addAgency("mfc", ["consumer"]);
  await bus.admin.call("service.put", { service: { id: "echo", owner: "fns" } });
  await waitFor(() => bus.broker.view.get("echo") !== undefined);
  await bus.settled();
  const fns = await bus.connect("fns");
  const mfc = await bus.connect("mfc");
  fns.provide("echo", (req) => req.payload);
  await mfc.subscribe({ kinds: ["status"] });

  await mfc.request("echo", "watched", { id: "watched-1", timeoutMs: 15_000 });

  for await (const event of mfc.events()) {
    event.ack();
    if (JSON.stringify(event.notification).includes("watched-1")) break;
  }
  t.pass();
});

test("a service changing owner moves the right to answer its calls, without a restart", async (t) => {
  const bus = await startSecureBus((fn) => t.teardown(fn));
  const fnsKey = await bus.addAgency("fns", ["provider"]);
  await bus.addAgency("pfr", ["provider"]);
  await bus.addAgency("mfc", ["consumer"]);
  await bus.admin.call("service.put", { service: { id: "lookup", owner: "fns" } });
  await waitFor(() => bus.broker.view.get("lookup") !== undefined);
  await bus.settled();
  const fnsRaw = await connectAs(bus.servers, { id: "fns", seed: fnsKey.seed });
  t.teardown(() => fnsRaw.close());
  const before = await subscribeOutcome(fnsRaw, "mg.call.lookup");
  t.is(before, "allowed");

  await bus.admin.call("service.put", { service: { id: "lookup", owner: "pfr" } });
  await waitFor(() => bus.broker.view.get("lookup")?.owner === "pfr");
  await bus.settled();

  t.is(await subscribeOutcome(fnsRaw, "mg.call.lookup"), "denied");
  const pfr = await bus.connect("pfr");
  pfr.provide("lookup", () => "from pfr");
  const mfc = await bus.connect("mfc");
  const answer = await mfc.request("lookup", "q", { timeoutMs: 15_000 });
  t.is(text(answer.payload), "from pfr");
});

test("a rotated nkey logs in and the one it replaced no longer does", async (t) => {
  const bus = await startSecureBus((fn) => t.teardown(fn));
  const old = await bus.addAgency("mfc", ["consumer"]);
  const { createUser } = await import("@nats-io/nkeys");
  const next = createUser();

  await bus.admin.call("agency.put", {
    id: "mfc",
    roles: ["consumer"],
    credentials: { nkeys: [next.getPublicKey()] },
  });
  await waitFor(
    () => bus.broker.view.agency("mfc")?.credentials?.nkeys?.[0] === next.getPublicKey(),
  );
  await bus.settled();

  const fresh = await connectAs(bus.servers, { id: "mfc", seed: next.getSeed() });
  t.teardown(() => fresh.close());
  await t.throwsAsync(connectAs(bus.servers, { id: "mfc", seed: old.seed }), {
    message: /Authorization/i,
  });
});

test("agency registration refuses clear passwords, bad nkeys, reserved ids and a borrowed nkey", async (t) => {
  const bus = await startSecureBus((fn) => t.teardown(fn));
  const fns = await bus.addAgency("fns", ["provider"]);
  const refuse = (body: Record<string, unknown>) =>
    t.throwsAsync(bus.admin.call("agency.put", { roles: ["consumer"], ...body }), {
      message: /./,
    });

  const cases = await Promise.all([
    refuse({ id: "mfc", credentials: { password: "a clear password" } }),
    refuse({ id: "mfc", credentials: { nkeys: ["UNOTAKEY"] } }),
    refuse({ id: "mfc", credentials: { passwordHash: "md5:abc" } }),
    refuse({ id: "operator" }),
    refuse({ id: "magistral-broker" }),
    refuse({ id: "mfc", credentials: { nkeys: [fns.publicKey] } }),
    refuse({ id: "mfc", signingKeys: [{ keyId: "k1", publicKey: "AAAA" }] }),
  ]);

  t.true(cases.every((err) => (err as { code?: string }).code === "BAD_REQUEST"));
});

test("permissions are derived from roles and ownership only", (t) => {
  const agency = (id: string, roles: Agency["roles"]): Agency => ({
    id,
    name: id,
    roles,
    registeredAt: 0,
    updatedAt: 0,
  });
  const service = (id: string, owner: string, extra: Partial<ServiceDef> = {}) =>
    ({ id, owner, status: "active", broadcast: false, providers: [], ...extra }) as ServiceDef;
  const services = [
    service("own", "fns"),
    service("gone", "fns", { status: "retired" }),
    service("news", "pfr", { broadcast: true, providers: ["fns", "pfr"] }),
  ];

  const provider = permissionsOf(agency("fns", ["provider"]), services);
  const consumer = permissionsOf(agency("mfc", ["consumer"]), services);

  t.deepEqual(provider.publish, [
    "mg.api.fns.>",
    "$JS.API.CONSUMER.INFO.MG_NOTIFY.notify_fns",
    "$JS.API.CONSUMER.MSG.NEXT.MG_NOTIFY.notify_fns",
    "$JS.ACK.MG_NOTIFY.notify_fns.>",
  ]);
  t.deepEqual(provider.subscribe, [
    "_INBOX.fns.>",
    "mg.call.news.fns",
    "mg.call.own",
    "mg.call.own.fns",
  ]);
  t.true(provider.allowResponses);
  t.deepEqual(consumer.subscribe, ["_INBOX.mfc.>"]);
  t.false(consumer.allowResponses);
  t.true(consumer.publish.includes("$JS.API.CONSUMER.MSG.NEXT.MG_REPLIES.reply_mfc"));
  t.true(consumer.publish.includes("$JS.ACK.MG_NOTIFY.notify_mfc.>"));
  t.false(consumer.publish.some((s) => s.startsWith("mg.admin")));
});

async function subscribeOutcome(
  nc: Awaited<ReturnType<typeof connectAs>>,
  subj: string,
): Promise<"allowed" | "denied"> {
  let denied = false;
  const sub = nc.subscribe(subj, {
    queue: "probe",
    callback: (err) => {
      if (err instanceof PermissionViolationError) denied = true;
    },
  });
  await nc.flush();
  await new Promise((r) => setTimeout(r, 50));
  if (!sub.isClosed()) sub.unsubscribe();
  return denied ? "denied" : "allowed";
}

test("servers sharing one auth file are all told to reload, and an unchanged file is left alone", (t) => {
  const dir = tempDir(t);
  const authFile = path.join(dir, "auth.conf");
  const targets = [
    { authFile, pid: () => undefined },
    { authFile, pid: () => undefined },
    { authFile: path.join(dir, "other.conf"), pid: () => undefined },
  ];

  t.is(applyAuthorization("authorization { users: [] }\n", targets).length, 3);
  t.is(applyAuthorization("authorization { users: [] }\n", targets).length, 0);
  t.is(readFileSync(authFile, "utf8"), "authorization { users: [] }\n");
  t.is(authInclude(path.join(dir, "n1.conf"), authFile), 'include "auth.conf"');
});

test("agency and service entries written to the buckets by hand are passed over; the others still log in", async (t) => {
  const bus = await startSecureBus((fn) => t.teardown(fn));
  const kvm = new Kvm(bus.admin.nc);
  const agencies = await kvm.open(BUCKET.agencies);
  const services = await kvm.open(BUCKET.services);
  await agencies.put("oops", encodeValue({ id: "oops", name: "oops" }));
  await agencies.put("junk", encodeValue("x"));
  await services.put("stray", encodeValue({ id: "stray" }));
  const answer = await echoAcross(bus);
  t.is(text(answer.payload), "echo:hello");
  t.is(bus.broker.view.agency("oops"), undefined);
  t.is(bus.broker.view.get("stray"), undefined);
});
