import test from "ava";
import { RequestFailedError } from "../src/client.ts";
import type { ServiceDef } from "../src/registry.ts";
import { startBus, waitFor } from "./helpers/bus.ts";

test("a request crosses the bus and its answer comes back to the consumer", async (t) => {
  const bus = await startBus(t);
  const provider = await bus.addAgency("fns");
  const consumer = await bus.addAgency("mfc");
  await bus.admin.call<ServiceDef>("service.put", { service: { id: "echo", owner: "fns" } });
  await waitFor(() => bus.broker.view.get("echo") !== undefined);
  provider.provide("echo", (req) => `echo:${new TextDecoder().decode(req.payload)}:${req.attempt}`);

  const answer = await consumer.request("echo", "hello");

  t.is(new TextDecoder().decode(answer.payload), "echo:hello:1");
  t.is(answer.provider, "fns");
  t.is(answer.service, "echo");
});

test("an unknown service is refused with UNKNOWN_SERVICE", async (t) => {
  const bus = await startBus(t);
  const consumer = await bus.addAgency("mfc");
  const err = await t.throwsAsync(consumer.submit("nope", "x"), { instanceOf: RequestFailedError });
  t.is(err?.code, "UNKNOWN_SERVICE");
});
