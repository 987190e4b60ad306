import http from "node:http";
import path from "node:path";
import { AckPolicy, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import test from "ava";
import type { Alert } from "../actors/alerts.ts";
import { freePort } from "../cluster/nats-server.ts";
import { RequestFailedError } from "../src/client.ts";
import { decodeValue, encodeValue } from "../src/envelope.ts";
import { startBrokerProcess } from "./helpers/broker-process.ts";
import { startBus, waitFor } from "./helpers/bus.ts";

const busAlerts = (alerts: Alert[], kind: string) => alerts.filter((a) => a.kind === kind);

test("a broker node that dies is alerted once as lost; one that leaves cleanly is not", async (t) => {
  const bus = await startBus(t, { heartbeatMs: 200 });
  const doomed = await startBrokerProcess(t, {
    servers: bus.server.url,
    nodeId: "doomed",
    dataDir: path.join(bus.dir, "doomed"),
    env: { MAGISTRAL_HEARTBEAT_MS: "200" },
  });
  const polite = await startBrokerProcess(t, {
    servers: bus.server.url,
    nodeId: "polite",
    dataDir: path.join(bus.dir, "polite"),
    env: { MAGISTRAL_HEARTBEAT_MS: "200" },
  });
  await polite.kill("SIGTERM");
  await doomed.kill("SIGKILL");

  const lost = async () =>
    busAlerts(await bus.admin.call<Alert[]>("alert.list", { service: "_bus" }), "broker_node_lost");
  await waitFor(async () => (await lost()).length > 0, 15_000);
  await new Promise((r) => setTimeout(r, 1_500));

  const alerts = await lost();
  t.is(alerts.length, 1);
  t.is(alerts[0]?.provider, "doomed");
  t.is(alerts[0]?.severity, "critical");
});

test("alerts are POSTed to the webhook; a dead webhook does not hold up delivery", async (t) => {
  const received: Alert[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => {
      body += c;
    });
    req.on("end", () => {
      received.push(JSON.parse(body));
      res.end("ok");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.teardown(() => server.close());
  const { port } = server.address() as { port: number };

  const bus = await startBus(t, { alertWebhookUrl: `http://127.0.0.1:${port}/alerts` });
  const fns = await bus.addAgency("fns");
  const mfc = await bus.addAgency("mfc");
  await bus.admin.call("service.put", {
    service: { id: "fragile", owner: "fns", retry: { attempts: 1 } },
  });
  await waitFor(() => bus.broker.view.get("fragile") !== undefined);
  fns.provide("fragile", () => {
    throw new Error("broken");
  });
  await t.throwsAsync(mfc.request("fragile", "<q/>"), { instanceOf: RequestFailedError });
  await waitFor(() => received.some((a) => a.kind === "message_deadlettered"));
  t.is(received.find((a) => a.kind === "message_deadlettered")?.service, "fragile");

  const deadPort = await freePort();
  const other = await startBus(t, { alertWebhookUrl: `http://127.0.0.1:${deadPort}/alerts` });
  const p2 = await other.addAgency("fns");
  const c2 = await other.addAgency("mfc");
  await other.admin.call("service.put", {
    service: { id: "fragile", owner: "fns", retry: { attempts: 1 } },
  });
  await waitFor(() => other.broker.view.get("fragile") !== undefined);
  p2.provide("fragile", () => {
    throw new Error("broken");
  });
  await t.throwsAsync(c2.request("fragile", "<q/>"), { instanceOf: RequestFailedError });
  await other.admin.call("service.put", { service: { id: "steady", owner: "fns" } });
  await waitFor(() => other.broker.view.get("steady") !== undefined);
  p2.provide("steady", () => "<ok/>");
  const started = Date.now();
  const answer = await c2.request("steady", "<q/>");
  t.is(new TextDecoder().decode(answer.payload), "<ok/>");
  t.true(Date.now() - started < 2_000);
});

test("a recovery is alerted when the node cannot watch the alerts bucket, and recorded for the next outage", async (t) => {
  // An outage recorded by a node that has since restarted, in an alerts
  // bucket whose one consumer slot is taken: this node's watch of it fails,
  // its reads and writes do not.
  let nc: NatsConnection | undefined;
  const bus = await startBus(
    t,
    {},
    {
      beforeBroker: async (server) => {
        nc = await connect({ servers: server.url });
        const jsm = await jetstreamManager(nc);
        await jsm.streams.add({
          name: "KV_mg_alerts",
          subjects: ["$KV.mg_alerts.>"],
          max_msgs_per_subject: 1,
          allow_rollup_hdrs: true,
          deny_delete: true,
          allow_direct: true,
          max_consumers: 1,
        });
        await jsm.consumers.add("KV_mg_alerts", {
          durable_name: "taken",
          ack_policy: AckPolicy.None,
        });
        const kv = await new Kvm(nc).open("mg_alerts");
        await kv.put("fragile.fns.health", encodeValue({ state: "down", at: Date.now() }));
      },
    },
  );
  t.teardown(() => nc?.close());
  const fns = await bus.addAgency("fns");
  const mfc = await bus.addAgency("mfc");
  await bus.admin.call("service.put", { service: { id: "fragile", owner: "fns" } });
  await waitFor(() => bus.broker.view.get("fragile") !== undefined);
  fns.provide("fragile", () => "fine");
  await mfc.request("fragile", "x");

  const kinds = async () =>
    (await bus.admin.call<Alert[]>("alert.list", { service: "fragile" })).map((a) => a.kind);
  await waitFor(async () => (await kinds()).includes("service_recovered"), 10_000);
  const kv = await new Kvm(nc!).open("mg_alerts");
  const entry = await kv.get("fragile.fns.health");
  t.is(
    (decodeValue(entry!.value) as { state: string }).state,
    "up",
    "the next outage is a transition from up, so it is alerted",
  );
});
