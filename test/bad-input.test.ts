import test, { type ExecutionContext } from "ava";
import type { SubmitReply } from "../src/api.ts";
import type { AgencyClient } from "../src/client.ts";
import { decodeValue, type Envelope, encodeEnvelope, PROTOCOL_VERSION } from "../src/envelope.ts";
import type { ErrorCode } from "../src/errors.ts";
import { newMessageId } from "../src/ids.ts";
import { subject } from "../src/subjects.ts";
import { startBus, type TestBus, waitFor } from "./helpers/bus.ts";
import { journaled } from "./helpers/journal.ts";

const NS = "urn:magistral:test:extract";
const EXTRACT_XSD = `<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="${NS}"
    xmlns="${NS}" elementFormDefault="qualified">
  <xs:element name="Query">
    <xs:complexType><xs:sequence>
      <xs:element name="Ogrn">
        <xs:simpleType><xs:restriction base="xs:string">
          <xs:pattern value="\\d{13}"/>
        </xs:restriction></xs:simpleType>
      </xs:element>
    </xs:sequence></xs:complexType>
  </xs:element>
</xs:schema>`;
const VALID_QUERY = `<Query xmlns="${NS}"><Ogrn>1027700070518</Ogrn></Query>`;
const ECHO_MAX_PAYLOAD_BYTES = 1_024;

interface Setup {
  bus: TestBus;
  /** The agency sending bad input. */
  mfc: AgencyClient;
  /** Another agency whose valid requests must still be answered. */
  pfr: AgencyClient;
  calls: Envelope[];
}

async function setup(t: ExecutionContext): Promise<Setup> {
  const bus = await startBus(t);
  const fns = await bus.addAgency("fns", ["provider"]);
  const mfc = await bus.addAgency("mfc", ["consumer"]);
  const pfr = await bus.addAgency("pfr", ["consumer"]);
  await bus.admin.call("service.put", {
    service: { id: "echo", owner: "fns", maxPayloadBytes: ECHO_MAX_PAYLOAD_BYTES },
  });
  await bus.admin.call("service.put", {
    service: { id: "extract", owner: "fns" },
    schema: { kind: "xsd", main: "extract.xsd", files: { "extract.xsd": EXTRACT_XSD } },
  });
  await waitFor(
    () => bus.broker.view.get("echo") !== undefined && !!bus.broker.view.get("extract")?.schema,
  );
  const calls: Envelope[] = [];
  fns.provide("echo", (req) => {
    calls.push(req);
    return req.payload;
  });
  fns.provide("extract", (req) => {
    calls.push(req);
    return `<Answer xmlns="${NS}"/>`;
  });
  return { bus, mfc, pfr, calls };
}

/** Publishes raw bytes on the agency's submit subject, as a non-SDK adapter would. */
async function rawSubmit(client: AgencyClient, data: Uint8Array): Promise<SubmitReply> {
  const msg = await client.nc.request(subject.api(client.agency, "submit"), data, {
    timeout: 10_000,
  });
  return decodeValue(msg.data) as SubmitReply;
}

function request(
  fields: Partial<Omit<Envelope, "payload">> & { payload: Uint8Array | string },
): Envelope {
  const { payload, ...rest } = fields;
  return {
    v: PROTOCOL_VERSION,
    id: newMessageId(),
    kind: "request",
    createdAt: Date.now(),
    ...rest,
    payload: typeof payload === "string" ? new TextEncoder().encode(payload) : payload,
  };
}

/**
 * Sends one bad input and checks the whole contract: a coded error reply,
 * a "rejected" journal record with that code, and a bus that still answers
 * another agency right after.
 */
async function expectRejected(
  t: ExecutionContext,
  s: Setup,
  label: string,
  code: ErrorCode,
  send: () => Promise<SubmitReply>,
  agency = "mfc",
): Promise<void> {
  const started = performance.now();
  const reply = await send();
  t.false(reply.ok, label);
  if (reply.ok) return;
  t.is(reply.error.code, code, label);
  t.is(typeof reply.error.message, "string");
  t.true(performance.now() - started < 5_000, `${label}: answered promptly`);

  t.truthy(reply.id, `${label}: reply names the journal id`);
  const records = await journaled(s.bus.broker, reply.id!, "rejected");
  const rejected = records.find((r) => r.event.type === "rejected")!.event;
  t.is(rejected.code, code, label);
  t.is(rejected.agency, agency, label);

  const answer = await s.pfr.request("echo", `still answering after ${label}`, {
    timeoutMs: 10_000,
  });
  t.is(new TextDecoder().decode(answer.payload), `still answering after ${label}`);
}

test("malformed envelopes are refused as BAD_ENVELOPE", async (t) => {
  const s = await setup(t);
  const valid = encodeEnvelope(request({ service: "echo", payload: "x" }));
  const cases: [string, Uint8Array][] = [
    ["random bytes", new Uint8Array([0xc1, 0x00, 0xff, 0x13, 0x37])],
    ["empty message", new Uint8Array(0)],
    ["truncated msgpack", valid.subarray(0, valid.length - 3)],
    ["a response kind", encodeEnvelope({ ...request({ payload: "x" }), kind: "response" })],
    ["a bad service id", encodeEnvelope(request({ service: "Echo.*", payload: "x" }))],
    ["protocol version 2", encodeEnvelope({ ...request({ payload: "x" }), v: 2 })],
  ];
  for (const [label, data] of cases) {
    await expectRejected(t, s, label, "BAD_ENVELOPE", () => rawSubmit(s.mfc, data));
  }
  t.is(s.calls.length, cases.length, "only the follow-up requests reached the provider");
});

test("requests the bus cannot route are refused", async (t) => {
  const s = await setup(t);
  const ghost = await s.bus.agency("ghost");
  const send = (client: AgencyClient, env: Envelope) => () =>
    rawSubmit(client, encodeEnvelope(env));

  await expectRejected(
    t,
    s,
    "an unknown service",
    "UNKNOWN_SERVICE",
    send(s.mfc, request({ service: "nope", payload: "x" })),
  );
  await expectRejected(
    t,
    s,
    "no service name and no XML",
    "UNKNOWN_SERVICE",
    send(s.mfc, request({ payload: "plain text" })),
  );
  await expectRejected(
    t,
    s,
    "an XML root no service is registered for",
    "UNKNOWN_SERVICE",
    send(s.mfc, request({ payload: `<Other xmlns="${NS}"/>` })),
  );
  await expectRejected(
    t,
    s,
    "an unregistered agency",
    "ACCESS_DENIED",
    send(ghost, request({ service: "echo", payload: "x" })),
    "ghost",
  );
});

test("payloads the service's policy refuses are refused with their code", async (t) => {
  const s = await setup(t);
  const send = (env: Envelope) => () => rawSubmit(s.mfc, encodeEnvelope(env));

  await expectRejected(
    t,
    s,
    "a payload over maxPayloadBytes",
    "PAYLOAD_TOO_LARGE",
    send(request({ service: "echo", payload: new Uint8Array(ECHO_MAX_PAYLOAD_BYTES + 1) })),
  );
  await expectRejected(
    t,
    s,
    "XML that breaks the schema",
    "SCHEMA_INVALID",
    send(request({ service: "extract", payload: `<Query xmlns="${NS}"><Ogrn>12</Ogrn></Query>` })),
  );
  await expectRejected(
    t,
    s,
    "XML that is not well-formed",
    "SCHEMA_INVALID",
    send(request({ service: "extract", payload: `<Query xmlns="${NS}"><Ogrn>` })),
  );
  await expectRejected(
    t,
    s,
    "a lifetime already over",
    "EXPIRED",
    send(request({ service: "echo", payload: "x", createdAt: Date.now() - 60_000, ttlMs: 1_000 })),
  );
  const answer = await s.pfr.request("extract", VALID_QUERY, { timeoutMs: 10_000 });
  t.is(answer.service, "extract");
});

test("hostile XML is refused without expanding entities", async (t) => {
  const s = await setup(t);
  const send = (payload: string) => () =>
    rawSubmit(s.mfc, encodeEnvelope(request({ service: "extract", payload })));
  const xxe = `<?xml version="1.0"?>
<!DOCTYPE Query [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Query xmlns="${NS}"><Ogrn>&xxe;</Ogrn></Query>`;
  const entities = Array.from(
    { length: 10 },
    (_, i) => `<!ENTITY l${i + 1} "${`&l${i};`.repeat(10)}">`,
  ).join("");
  const laughs = `<?xml version="1.0"?>
<!DOCTYPE Query [<!ENTITY l0 "lol">${entities}]>
<Query xmlns="${NS}"><Ogrn>&l10;</Ogrn></Query>`;

  await expectRejected(t, s, "an external entity (XXE)", "SCHEMA_INVALID", send(xxe));
  await expectRejected(t, s, "billion laughs", "SCHEMA_INVALID", send(laughs));
  // Unnamed, the payload is parsed for routing first: still no expansion, still refused.
  await expectRejected(t, s, "billion laughs routed by root", "UNKNOWN_SERVICE", () =>
    rawSubmit(s.mfc, encodeEnvelope(request({ payload: laughs }))),
  );
});

test("sender and provider are set by the bus, never taken from the envelope", async (t) => {
  const s = await setup(t);
  const reply = await rawSubmit(
    s.mfc,
    encodeEnvelope(
      request({ service: "echo", payload: "who am i", sender: "pfr", provider: "pfr" }),
    ),
  );
  t.true(reply.ok);
  await waitFor(() => s.calls.length === 1);
  t.is(s.calls[0]!.sender, "mfc");
  t.is(s.calls[0]!.provider, undefined, "only the bus names a provider");
});
