import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import test from "ava";
import { BUCKET } from "../src/subjects.ts";
import { startBus, waitFor } from "./helpers/bus.ts";

test("services put and removed in one burst of the bucket end removed, their actors stopped", async (t) => {
  const bus = await startBus(t);
  await bus.addAgency("fns");
  const ids = Array.from({ length: 20 }, (_, i) => `brief-${i}`);
  for (const id of ids) {
    await bus.admin.call("service.put", { service: { id, owner: "fns" } });
  }
  await waitFor(() => ids.every((id) => bus.broker.view.get(id) !== undefined));

  const nc = await connect({ servers: bus.server.url });
  t.teardown(() => nc.close());
  const kv = await new Kvm(nc).open(BUCKET.services);
  const values = await Promise.all(ids.map(async (id) => (await kv.get(id))!.value));
  // Sent together, so the registry's watcher reads most of them in one turn:
  // each service is put again and then removed.
  const burst: Promise<unknown>[] = [];
  ids.forEach((id, i) => {
    burst.push(kv.put(id, values[i]!));
    burst.push(kv.delete(id));
  });
  await Promise.all(burst);
  // The bucket's changes reach the registry in order: once this one is
  // there, so is every change of the burst.
  await bus.admin.call("service.put", { service: { id: "marker", owner: "fns" } });
  await waitFor(() => bus.broker.view.get("marker") !== undefined);

  t.deepEqual(
    ids.filter((id) => bus.broker.view.get(id) !== undefined),
    [],
    "no service removed after its put is still registered",
  );
  const lanes = await bus.broker.health();
  t.deepEqual(
    lanes.filter((lane) => ids.includes(lane.service)).map((lane) => lane.service),
    [],
    "their actors are stopped",
  );
});

test("a value in the services bucket that is not a definition is passed over; later services still register", async (t) => {
  const bus = await startBus(t);
  await bus.addAgency("fns");
  const nc = await connect({ servers: bus.server.url });
  t.teardown(() => nc.close());
  const kv = await new Kvm(nc).open(BUCKET.services);
  // 0xc1 is never valid MessagePack; 0x80 is an empty map, no definition.
  await kv.put("garbage", new Uint8Array([0xc1, 0xc1, 0xc1]));
  await kv.put("empty", new Uint8Array([0x80]));
  await bus.admin.call("service.put", { service: { id: "after", owner: "fns" } });
  await waitFor(() => bus.broker.view.get("after") !== undefined);
  t.is(bus.broker.view.get("garbage"), undefined);
  t.is(bus.broker.view.get("empty"), undefined);
  const lanes = await bus.broker.health();
  t.deepEqual(
    lanes.map((lane) => lane.service),
    ["after"],
    "no actor for what is not a definition",
  );
});
