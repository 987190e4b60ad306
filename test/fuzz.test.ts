import test from "ava";
import { decodeEnvelope, decodeValue, encodeValue } from "../src/envelope.ts";
import { ErrorCode, isErrorCode, MagistralError } from "../src/errors.ts";
import { subject } from "../src/subjects.ts";
import { startBus, waitFor } from "./helpers/bus.ts";
import { hostileInputs, seededRandom } from "./helpers/hostile.ts";
import { journaled } from "./helpers/journal.ts";

const DECODER_INPUTS = 20_000;
const SUBMIT_INPUTS = 3_000;
const IN_FLIGHT = 32;
const seed = Number(process.env.MAGISTRAL_FUZZ_SEED ?? Date.now() % 1_000_000);

const XSD = `<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:fuzz"
    elementFormDefault="qualified">
  <xs:element name="Query" type="xs:string"/>
</xs:schema>`;

test("the decoder answers every hostile input with an envelope or BAD_ENVELOPE", (t) => {
  const inputs = hostileInputs(seededRandom(seed), DECODER_INPUTS, "svc");
  const startedMs = Date.now();
  let decoded = 0;
  for (const [i, input] of inputs.entries()) {
    try {
      decodeEnvelope(input);
      decoded++;
    } catch (err) {
      if (err instanceof MagistralError && err.code === ErrorCode.BAD_ENVELOPE) continue;
      const hex = Buffer.from(input.subarray(0, 64)).toString("hex");
      t.fail(`seed ${seed}, input ${i} (${hex}...): ${String(err)}`);
      return;
    }
  }
  t.log(`${inputs.length} inputs, ${decoded} decoded, ${Date.now() - startedMs}ms`);
  t.true(decoded < inputs.length);
});

test("the submit path answers thousands of hostile submits with codes, then serves a valid request", async (t) => {
  const bus = await startBus(t);
  const fns = await bus.addAgency("fns", ["provider"]);
  const mfc = await bus.addAgency("mfc", ["consumer"]);
  await bus.admin.call("service.put", { service: { id: "svc", owner: "fns" } });
  await bus.admin.call("service.put", {
    service: { id: "xml", owner: "fns" },
    schema: { kind: "xsd", main: "q.xsd", files: { "q.xsd": XSD }, rootElement: "Query" },
  });
  await waitFor(() => !!bus.broker.view.get("svc") && !!bus.broker.view.get("xml")?.schema);
  fns.provide("svc", (req) => req.payload);
  fns.provide("xml", () => "<Answer/>");

  const inputs = [
    ...hostileInputs(seededRandom(seed), SUBMIT_INPUTS, "svc"),
    ...hostileInputs(seededRandom(seed + 1), 300, "xml"),
  ];
  const startedMs = Date.now();
  const codes = new Map<string, number>();
  let rejectedId: string | undefined;
  await inParallel(inputs, IN_FLIGHT, async (input, i) => {
    const target = i % 10 === 9 ? hostileSubject(i) : subject.api("mfc", "submit");
    const reply = await askBus(mfc.nc, target, input);
    const key = reply.ok ? "accepted" : reply.error.code;
    codes.set(key, (codes.get(key) ?? 0) + 1);
    if (!reply.ok && reply.id && target === subject.api("mfc", "submit")) rejectedId = reply.id;
  });
  t.log(`seed ${seed}: ${inputs.length} submits in ${Date.now() - startedMs}ms`, [...codes]);

  t.false(codes.has("INTERNAL"), `seed ${seed}: an input reached an unexpected failure`);
  t.true((codes.get("BAD_ENVELOPE") ?? 0) > inputs.length / 3);
  const answer = await mfc.request("svc", "still here", { timeoutMs: 20_000 });
  t.is(new TextDecoder().decode(answer.payload), "still here");
  t.truthy(rejectedId);
  await journaled(bus.broker, rejectedId!, "rejected", 20_000);
});

type Reply = { ok: true } | { ok: false; id?: string; error: { code: string } };

/** Sends one input as a request; every answer must be a coded reply. */
async function askBus(
  nc: Awaited<ReturnType<typeof startBus>>["admin"]["nc"],
  target: string,
  input: Uint8Array,
): Promise<Reply> {
  const msg = await nc.request(target, input, { timeout: 20_000 });
  const reply = decodeValue(msg.data) as Reply;
  if (typeof reply?.ok !== "boolean" || (!reply.ok && !isErrorCode(reply.error?.code))) {
    throw new Error(`seed ${seed}: uncoded reply ${JSON.stringify(reply)}`);
  }
  return reply;
}

/** API subjects whose agency token is no registered agency, nor a valid id. */
function hostileSubject(i: number): string {
  const tokens = ["MFC", "mfc-", "x".repeat(200), "ü", "$JS", "_INBOX"];
  const op = i % 20 === 19 ? "status" : "submit";
  return subject.api(tokens[i % tokens.length]!, op);
}

async function inParallel<T>(
  items: T[],
  limit: number,
  run: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await run(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

test("status queries with hostile bodies are answered with codes", async (t) => {
  const bus = await startBus(t);
  const mfc = await bus.addAgency("mfc", ["consumer"]);
  const bodies = [
    ...hostileInputs(seededRandom(seed + 2), 300, "svc"),
    encodeValue({ id: "a.b" }),
    encodeValue({ id: "x".repeat(1000) }),
  ];
  await inParallel(bodies, IN_FLIGHT, async (body) => {
    await askBus(mfc.nc, subject.api("mfc", "status"), body);
  });
  t.pass();
});
