import test from "ava";
import { RequestFailedError } from "../src/client.ts";
import type { Envelope } from "../src/envelope.ts";
import { newMessageId } from "../src/ids.ts";
import type { ServiceDef } from "../src/registry.ts";
import { startBus, type TestBus, waitFor } from "./helpers/bus.ts";
import { journaled } from "./helpers/journal.ts";
import { loadSmevSamples, type SmevSample } from "./helpers/smev.ts";

/** Provider agency of each SMEV type, by the type's prefix. */
const PROVIDERS: Record<string, string> = { fns: "fns", gis: "minstroy" };
const CONSUMER = "mfc";

function ownerOf(sample: SmevSample): string {
  return PROVIDERS[sample.type.split("-")[0]!] ?? "smev";
}

/** What the provider answers: the sample response, or a small XML of our own. */
function answerOf(sample: SmevSample): Uint8Array {
  return (
    sample.response ??
    new TextEncoder().encode(`<Answer xmlns="urn:magistral:test">${sample.type}</Answer>`)
  );
}

/**
 * Registers every SMEV type as a service owned by its provider agency, and
 * serves each with its answer. Returns what each provider received.
 */
async function smevBus(t: Parameters<typeof startBus>[0]) {
  const samples = loadSmevSamples();
  const bus = await startBus(t);
  const received = new Map<string, Envelope>();
  const owners = [...new Set(samples.map(ownerOf))];
  const providers = new Map(
    await Promise.all(owners.map(async (id) => [id, await bus.addAgency(id)] as const)),
  );
  const consumer = await bus.addAgency(CONSUMER, ["consumer"]);
  for (const sample of samples) {
    await register(bus, sample);
    providers.get(ownerOf(sample))!.provide(sample.serviceId, (req) => {
      received.set(req.id, req);
      return { payload: answerOf(sample), contentType: "application/xml" };
    });
  }
  return { bus, samples, consumer, received };
}

async function register(bus: TestBus, sample: SmevSample): Promise<void> {
  const def = await bus.admin.call<ServiceDef>("service.put", {
    service: { id: sample.serviceId, owner: ownerOf(sample), description: sample.type },
    schema: sample.schema,
  });
  await waitFor(
    () => bus.broker.view.get(sample.serviceId)?.schema?.revision === def.schema?.revision,
  );
}

test("the SMEV samples folder is present and lists types with their files", (t) => {
  const samples = loadSmevSamples();
  t.true(samples.length >= 4);
  for (const s of samples) {
    t.truthy(s.schema.files[s.schema.main], `${s.type}: main XSD in its bundle`);
    t.true(s.request.length > 0 && s.invalidRequest.length > 0, s.type);
  }
});

test("each sample request is delivered as sent and answered with the provider's bytes", async (t) => {
  const { samples, consumer, received } = await smevBus(t);

  await Promise.all(
    samples.map(async (sample) => {
      const id = newMessageId();
      const answer = await consumer.request(sample.serviceId, sample.request, {
        id,
        timeoutMs: 15_000,
      });

      t.deepEqual(Buffer.from(answer.payload), Buffer.from(answerOf(sample)), sample.type);
      t.is(answer.kind, "response");
      t.is(answer.correlationId, id);
      t.is(answer.service, sample.serviceId);
      t.is(answer.provider, ownerOf(sample));
      t.is(answer.contentType, "application/xml");
      const call = received.get(id);
      t.deepEqual(Buffer.from(call!.payload), Buffer.from(sample.request), sample.type);
      t.is(call!.sender, CONSUMER);
    }),
  );
});

test("each invalid sample is refused with SCHEMA_INVALID and the refusal is journaled", async (t) => {
  const { bus, samples, consumer, received } = await smevBus(t);

  await Promise.all(
    samples.map(async (sample) => {
      const id = newMessageId();
      const err = await t.throwsAsync(
        consumer.submit(sample.serviceId, sample.invalidRequest, { id }),
        {
          instanceOf: RequestFailedError,
        },
      );
      t.is(err?.code, "SCHEMA_INVALID", sample.type);

      const records = await journaled(bus.broker, id, "rejected");
      const rejected = records.find((r) => r.event.type === "rejected")!;
      t.is(rejected.event.code, "SCHEMA_INVALID");
      t.is(rejected.event.agency, CONSUMER);
      t.is(rejected.event.service, sample.serviceId);
      t.false(
        records.some((r) => r.event.type === "accepted"),
        sample.type,
      );
    }),
  );
  t.is(received.size, 0);
});

test("a request without a service name is routed by its namespace and root element", async (t) => {
  const { samples, consumer, received } = await smevBus(t);

  await Promise.all(
    samples.map(async (sample) => {
      const id = newMessageId();
      const answer = await consumer.request(undefined, sample.request, { id, timeoutMs: 15_000 });

      t.is(answer.service, sample.serviceId, sample.type);
      t.is(received.get(id)?.service, sample.serviceId);
      t.deepEqual(Buffer.from(answer.payload), Buffer.from(answerOf(sample)));
    }),
  );
});

test("a document of the schema with another root element is not taken as the request", async (t) => {
  const { samples, consumer } = await smevBus(t);
  const withResponse = samples.filter((s) => s.response !== null);
  t.true(withResponse.length > 0);

  for (const sample of withResponse) {
    const named = await t.throwsAsync(consumer.submit(sample.serviceId, sample.response!), {
      instanceOf: RequestFailedError,
    });
    t.is(named?.code, "SCHEMA_INVALID", sample.type);
    const unnamed = await t.throwsAsync(consumer.submit(undefined, sample.response!), {
      instanceOf: RequestFailedError,
    });
    t.is(unnamed?.code, "UNKNOWN_SERVICE", sample.type);
  }
});
