import path from "node:path";
import test from "ava";
import { freePort, startNatsServer } from "../cluster/nats-server.ts";
import { AdminClient } from "../src/admin-client.ts";
import { AgencyClient } from "../src/client.ts";
import { queueStream } from "../src/subjects.ts";
import { startBrokerProcess } from "./helpers/broker-process.ts";
import { startBroker, waitFor } from "./helpers/bus.ts";
import { natsServer, tempDir } from "./helpers/nats.ts";

const SERVICE = { id: "extract", owner: "fns", callTimeoutMs: 1_000, concurrency: 8 };

async function connectAll(t: import("ava").ExecutionContext, url: string) {
  const admin = await AdminClient.connect({ servers: url });
  t.teardown(() => admin.close());
  await admin.call("agency.put", { id: "fns", roles: ["provider"] });
  await admin.call("agency.put", { id: "mfc", roles: ["consumer"] });
  await admin.call("service.put", { service: SERVICE });
  const fns = await AgencyClient.connect({ agency: "fns", nats: { servers: url } });
  const mfc = await AgencyClient.connect({ agency: "mfc", nats: { servers: url } });
  t.teardown(() => Promise.all([fns.close(), mfc.close()]));
  return { admin, fns, mfc };
}

/** Counts answers per request id until every id in `ids` has one, or time runs out. */
async function collect(mfc: AgencyClient, ids: Set<string>, timeoutMs: number) {
  const answers = new Map<string, number>();
  const deadline = setTimeout(() => mfc.nc.close(), timeoutMs);
  for await (const reply of mfc.responses()) {
    reply.ack();
    const id = reply.envelope.correlationId!;
    answers.set(id, (answers.get(id) ?? 0) + 1);
    if ([...ids].every((i) => answers.has(i))) break;
  }
  clearTimeout(deadline);
  return answers;
}

test("broker killed with SIGKILL during calls, then restarted: nothing lost, nothing answered twice", async (t) => {
  const dir = tempDir(t);
  const server = await natsServer(t, dir);
  const opts = { servers: server.url, nodeId: "crashy", dataDir: path.join(dir, "broker") };
  const first = await startBrokerProcess(t, opts);
  const { fns, mfc } = await connectAll(t, server.url);
  const calls = new Map<string, number>();
  let answered = 0;
  fns.provide("extract", async (req) => {
    calls.set(req.id, (calls.get(req.id) ?? 0) + 1);
    await new Promise((r) => setTimeout(r, 50));
    answered++;
    return `<ok id="${req.id}"/>`;
  });
  await mfc.openReplies();

  const ids = new Set<string>();
  for (let i = 0; i < 60; i++) ids.add((await mfc.submit("extract", `<q n="${i}"/>`)).id);
  await waitFor(() => answered >= 10);
  await first.kill("SIGKILL");
  await startBrokerProcess(t, opts);

  const answers = await collect(mfc, ids, 40_000);
  t.is(answers.size, ids.size, "every accepted request is answered");
  t.true(
    [...answers.values()].every((n) => n === 1),
    "no request is answered twice",
  );
  t.true([...ids].every((id) => (calls.get(id) ?? 0) >= 1));
});

test("nats-server restarted under load: the broker reconnects and its consumers and watchers resume", async (t) => {
  const dir = tempDir(t);
  const port = await freePort();
  const spec = { name: "restarting", port, storeDir: path.join(dir, "js") };
  let server = await startNatsServer(spec);
  t.teardown(() => server.kill());
  const broker = await startBroker(t, server, dir);
  const { admin, fns, mfc } = await connectAll(t, server.url);
  fns.provide("extract", (req) => `<ok id="${req.id}"/>`);
  await mfc.openReplies();

  const ids = new Set<string>();
  const submitRetrying = async (i: number) => {
    for (let attempt = 0; attempt < 100; attempt++) {
      try {
        ids.add((await mfc.submit("extract", `<q n="${i}"/>`, { id: `load-${i}` })).id);
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  for (let i = 0; i < 20; i++) await submitRetrying(i);
  await server.stop();
  await new Promise((r) => setTimeout(r, 500));
  server = await startNatsServer(spec);
  for (let i = 20; i < 40; i++) await submitRetrying(i);

  const answers = await collect(mfc, ids, 40_000);
  t.is(ids.size, 40);
  t.is(answers.size, 40);
  t.true([...answers.values()].every((n) => n === 1));

  await admin.call("service.put", { service: { ...SERVICE, id: "after-restart" } });
  await waitFor(() => broker.view.get("after-restart") !== undefined, 20_000);
  fns.provide("after-restart", () => "<fresh/>");
  const reply = await mfc.request("after-restart", "<q/>", { timeoutMs: 20_000 });
  t.is(new TextDecoder().decode(reply.payload), "<fresh/>");
});

test("a durable consumer that vanishes is recreated and delivery goes on", async (t) => {
  const dir = tempDir(t);
  const server = await natsServer(t, dir);
  const broker = await startBroker(t, server, dir);
  const { fns, mfc } = await connectAll(t, server.url);
  await waitFor(() => broker.view.get("extract") !== undefined);
  fns.provide("extract", (req) => `<ok id="${req.id}"/>`);
  await mfc.request("extract", "<q/>", { timeoutMs: 10_000 });

  await broker.bus.jsm.consumers.delete(queueStream("extract"), "svc_extract");
  const answer = await mfc.request("extract", "<again/>", { timeoutMs: 60_000 });
  t.regex(new TextDecoder().decode(answer.payload), /<ok id=/);
  const info = await broker.bus.jsm.consumers.info(queueStream("extract"), "svc_extract");
  t.is(info.name, "svc_extract");
});
