import test, { type ExecutionContext } from "ava";
import { AgencyClient, RequestFailedError } from "../src/client.ts";
import type { ErrorCode } from "../src/errors.ts";
import type { JournalPage } from "../src/journal-search.ts";
import type { ServicePolicy } from "../src/policy.ts";
import { ed25519Signer, generateSigningKey, signEnvelope } from "../src/signature.ts";
import { startBroker, startBus, type TestBus, waitFor } from "./helpers/bus.ts";
import { journaled } from "./helpers/journal.ts";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** A bus with provider fns serving `svc` under `policy`, and consumer mfc. */
async function setup(t: ExecutionContext, policy: Partial<ServicePolicy>, extra = {}) {
  const bus = await startBus(t);
  const fns = await bus.addAgency("fns", ["provider"]);
  const mfc = await bus.addAgency("mfc", ["consumer"]);
  await bus.admin.call("service.put", { service: { id: "svc", owner: "fns", policy, ...extra } });
  await waitFor(() => bus.broker.view.get("svc") !== undefined);
  fns.provide("svc", (req) => `ok:${text(req.payload)}:${req.test === true}`);
  return { bus, fns, mfc };
}

/** The code a refused submit carries, or "accepted". */
async function outcome(client: AgencyClient, payload = "x", opts = {}): Promise<string> {
  try {
    await client.submit("svc", payload, opts);
    return "accepted";
  } catch (err) {
    if (err instanceof RequestFailedError) return err.code;
    throw err;
  }
}

async function rejectedWith(t: ExecutionContext, bus: TestBus, id: string, code: ErrorCode) {
  const records = await journaled(bus.broker, id, "rejected");
  t.is(records.find((r) => r.event.type === "rejected")?.event.code, code);
}

test("the access list admits named agencies and members of named groups only", async (t) => {
  const { bus, mfc } = await setup(t, { consumers: ["mfc"], consumerGroups: ["municipal"] });
  const pfr = await bus.addAgency("pfr", ["consumer"]);
  await bus.admin.call("agency.put", { id: "town", roles: ["consumer"], groups: ["municipal"] });
  await waitFor(() => bus.broker.view.agency("town")?.groups?.[0] === "municipal");
  const town = await bus.agency("town");

  t.is(await outcome(mfc), "accepted");
  t.is(await outcome(town), "accepted");
  t.is(await outcome(pfr, "x", { id: "denied-1" }), "ACCESS_DENIED");
  await rejectedWith(t, bus, "denied-1", "ACCESS_DENIED");
});

test("an agency without the consumer role cannot submit", async (t) => {
  const { fns } = await setup(t, {});
  t.is(await outcome(fns), "ACCESS_DENIED");
});

test("payload size and asked lifetime are held to the service's ceilings", async (t) => {
  const { mfc } = await setup(t, {}, { maxPayloadBytes: 8, retry: { maxLifetimeMs: 60_000 } });
  t.is(await outcome(mfc, "123456789"), "PAYLOAD_TOO_LARGE");
  t.is(await outcome(mfc, "1", { ttlMs: 120_000 }), "BAD_ENVELOPE");
  t.is(await outcome(mfc, "1", { ttlMs: 30_000 }), "accepted");
});

test("the token bucket admits its burst, refuses the rest, and refills at its rate", async (t) => {
  const { bus, mfc } = await setup(t, { ratePerSecond: 4, burst: 3 });
  const first = await Promise.all(
    Array.from({ length: 6 }, (_, i) => outcome(mfc, "x", { id: `burst-${i}` })),
  );
  t.is(first.filter((o) => o === "accepted").length, 3);
  t.is(first.filter((o) => o === "RATE_LIMITED").length, 3);
  const refused = first.indexOf("RATE_LIMITED");
  await rejectedWith(t, bus, `burst-${refused}`, "RATE_LIMITED");

  await new Promise((r) => setTimeout(r, 300));
  t.is(await outcome(mfc), "accepted", "one token back after 250 ms");
});

test("the daily quota counts accepted requests per consumer", async (t) => {
  const { bus, mfc } = await setup(t, { dailyQuota: 2 });
  const pfr = await bus.addAgency("pfr", ["consumer"]);
  t.is(await outcome(mfc), "accepted");
  t.is(await outcome(mfc), "accepted");
  t.is(await outcome(mfc, "x", { id: "over-quota" }), "QUOTA_EXCEEDED");
  t.is(await outcome(pfr), "accepted", "another consumer has its own quota");
  await rejectedWith(t, bus, "over-quota", "QUOTA_EXCEEDED");
});

test("two broker nodes together admit exactly the burst", async (t) => {
  const { bus, mfc } = await setup(t, { ratePerSecond: 0.001, burst: 20 });
  const second = await startBroker(t, bus.server, `${bus.dir}/second`);
  await waitFor(() => second.view.get("svc") !== undefined);

  // In waves, so that both nodes see requests while tokens remain.
  const ids = Array.from({ length: 80 }, (_, i) => `both-${i}`);
  const outcomes: string[] = [];
  for (let wave = 0; wave < ids.length; wave += 4) {
    const batch = ids.slice(wave, wave + 4).map((id) => outcome(mfc, "x", { id }));
    outcomes.push(...(await Promise.all(batch)));
  }

  t.is(outcomes.filter((o) => o === "accepted").length, 20);
  t.is(outcomes.filter((o) => o === "RATE_LIMITED").length, 60);
  const acceptedIds = ids.filter((_, i) => outcomes[i] === "accepted");
  const nodes = new Set<string>();
  for (const id of acceptedIds) {
    const records = await journaled(bus.broker, id, "accepted");
    nodes.add(records.find((r) => r.event.type === "accepted")!.event.node);
  }
  t.is(nodes.size, 2, "both nodes admitted some of the burst");
});

test("a policy change applies at once and is journaled as a policy change", async (t) => {
  const { bus, mfc } = await setup(t, {});
  t.is(await outcome(mfc), "accepted");

  const after = await bus.admin.call<ServicePolicy>("policy.put", {
    service: "svc",
    policy: { consumers: ["pfr"] },
  });
  await waitFor(() => bus.broker.view.get("svc")?.policy?.consumers[0] === "pfr");

  t.deepEqual(after.consumers, ["pfr"]);
  t.is(await outcome(mfc), "ACCESS_DENIED");
  await waitFor(async () => {
    await bus.broker.flushEvents();
    const page = await bus.admin.call<JournalPage>("journal.search", {
      outcome: "changed",
      service: "svc",
    });
    return page.records.some((r) => r.event.entity === "policy");
  });
  await t.throwsAsync(
    bus.admin.call("policy.put", { service: "svc", policy: { ratePerSecond: -1 } }),
    { message: /ratePerSecond/ },
  );
});

test("signed requests: verified with the sender's key; unsigned, forged or tampered refused", async (t) => {
  const { bus, mfc } = await setup(t, { signatureRequired: true });
  const { key, privateKeyPem } = generateSigningKey("mfc-2026");
  const other = generateSigningKey("mfc-2026");
  await bus.admin.call("agency.put", { id: "mfc", roles: ["consumer"], signingKeys: [key] });
  await waitFor(() => bus.broker.view.agency("mfc")?.signingKeys?.length === 1);
  const signed = await bus.agency("mfc");
  const signer = ed25519Signer("mfc-2026", privateKeyPem);

  t.is(await outcome(mfc, "x", { id: "unsigned-1" }), "SIGNATURE_REQUIRED");
  const answer = await signedRequest(t, bus, signer);
  t.is(answer, "ok:hello:false");
  const forged = await submitSigned(signed, ed25519Signer("mfc-2026", other.privateKeyPem));
  t.is(forged, "SIGNATURE_INVALID");
  const unknownKey = await submitSigned(signed, ed25519Signer("nope", privateKeyPem));
  t.is(unknownKey, "SIGNATURE_INVALID");
  const tampered = await submitSigned(signed, signer, (env) => {
    env.payload = new TextEncoder().encode("hellO");
  });
  t.is(tampered, "SIGNATURE_INVALID");
  await rejectedWith(t, bus, "unsigned-1", "SIGNATURE_REQUIRED");
});

test("test traffic is routed with its flag and journaled as test, or refused by policy", async (t) => {
  const { bus, mfc } = await setup(t, {});
  const answer = await mfc.request("svc", "probe", { test: true, id: "test-1" });
  t.is(text(answer.payload), "ok:probe:true");
  const records = await journaled(bus.broker, "test-1", "accepted");
  t.true(records.find((r) => r.event.type === "accepted")?.event.test);

  await bus.admin.call("policy.put", { service: "svc", policy: { acceptTest: false } });
  await waitFor(() => bus.broker.view.get("svc")?.policy?.acceptTest === false);
  t.is(await outcome(mfc, "x", { test: true, id: "test-2" }), "ACCESS_DENIED");
  const rejected = await journaled(bus.broker, "test-2", "rejected");
  t.true(rejected.find((r) => r.event.type === "rejected")?.event.test);
});

type Signer = ReturnType<typeof ed25519Signer>;

/** A request through an SDK client that signs every submit, and its answer. */
async function signedRequest(t: ExecutionContext, bus: TestBus, signer: Signer) {
  const client = await AgencyClient.connect({
    agency: "mfc",
    nats: { servers: bus.server.url },
    signer,
  });
  t.teardown(() => client.close());
  return text((await client.request("svc", "hello")).payload);
}

async function submitSigned(
  client: AgencyClient,
  signer: Signer,
  tamper: (env: ReturnType<typeof buildRequest>) => void = () => {},
): Promise<string> {
  const envelope = buildRequest("hello");
  signEnvelope(envelope, signer);
  tamper(envelope);
  try {
    await client.submitEnvelope(envelope);
    return "accepted";
  } catch (err) {
    return (err as RequestFailedError).code;
  }
}

function buildRequest(payload: string) {
  return {
    v: 1,
    id: crypto.randomUUID(),
    kind: "request" as const,
    service: "svc",
    createdAt: Date.now(),
    payload: new TextEncoder().encode(payload),
  };
}
