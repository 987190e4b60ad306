// The KV follower against a real nats-server: what it hands over on a
// periodic refresh of its watch, and after the server restarts.
import path from "node:path";
import { AckPolicy, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import test from "ava";
import { startNatsServer } from "../cluster/nats-server.ts";
import { KvFollower } from "../src/kv-follower.ts";
import { componentLogger } from "../src/logger.ts";
import { waitFor } from "./helpers/bus.ts";
import { tempDir } from "./helpers/nats.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test("a refresh hands over only changed values; after a server restart, every value", async (t) => {
  const spec = { name: "kv-follow", storeDir: path.join(tempDir(t), "js") };
  let server = await startNatsServer(spec);
  t.teardown(() => server.kill());
  const nc = await connect({
    servers: server.url,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 100,
  });
  t.teardown(() => nc.close());
  const kv = await new Kvm(nc).create("follow");
  await kv.put("a", "1");
  await kv.put("b", "1");

  const puts: string[] = [];
  const handlers = { put: (key: string) => puts.push(key), remove: () => {} };
  const follower = new KvFollower(nc, kv, handlers, componentLogger("test"), 200);
  t.teardown(() => follower.stop());
  await follower.start();
  t.deepEqual(puts.sort(), ["a", "b"]);

  await sleep(700);
  t.deepEqual(puts.sort(), ["a", "b"], "refreshes replay nothing unchanged");
  await kv.put("b", "2");
  await waitFor(() => puts.length === 3);
  t.deepEqual(puts.slice(2), ["b"]);

  await server.kill();
  server = await startNatsServer({ ...spec, port: server.port });
  await waitFor(() => puts.length >= 5, 15_000);
  t.deepEqual(puts.slice(3).sort(), ["a", "b"], "a reconnect hands every value over again");
});

test("a bucket deleted and made again is handed over again, though its revisions start over", async (t) => {
  const server = await startNatsServer({
    name: "kv-remade",
    storeDir: path.join(tempDir(t), "js"),
  });
  t.teardown(() => server.kill());
  const nc = await connect({ servers: server.url });
  t.teardown(() => nc.close());
  const kvm = new Kvm(nc);
  let kv = await kvm.create("remade");
  await kv.put("a", "old");
  await kv.put("b", "x");

  const values = new Map<string, string>();
  const handlers = {
    put: (key: string, value: Uint8Array) => values.set(key, new TextDecoder().decode(value)),
    remove: (key: string) => values.delete(key),
  };
  const follower = new KvFollower(nc, kv, handlers, componentLogger("test"), 200);
  t.teardown(() => follower.stop());
  await follower.start();
  t.is(values.get("a"), "old");

  const jsm = await jetstreamManager(nc);
  await jsm.streams.delete("KV_remade");
  kv = await kvm.create("remade");
  await kv.put("a", "new");
  await waitFor(() => values.get("a") === "new", 10_000);
  t.false(values.has("b"), "a key the new bucket lacks is removed");
});

test("live only while a watch runs and has caught up: not after the watch failed", async (t) => {
  const server = await startNatsServer({
    name: "kv-blocked",
    storeDir: path.join(tempDir(t), "js"),
  });
  t.teardown(() => server.kill());
  const nc = await connect({ servers: server.url });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  // A bucket's stream that admits one consumer, taken: the watch cannot start.
  await jsm.streams.add({
    name: "KV_blocked",
    subjects: ["$KV.blocked.>"],
    max_msgs_per_subject: 1,
    allow_rollup_hdrs: true,
    deny_delete: true,
    max_consumers: 1,
  });
  await jsm.consumers.add("KV_blocked", { durable_name: "taken", ack_policy: AckPolicy.None });
  const kv = await new Kvm(nc).open("blocked");
  await kv.put("a", "1");

  const follower = new KvFollower(
    nc,
    kv,
    { put: () => {}, remove: () => {} },
    componentLogger("test"),
    200,
  );
  t.teardown(() => follower.stop());
  await follower.start();
  t.false(follower.live, "a failed watch is not live");

  await jsm.consumers.delete("KV_blocked", "taken");
  await waitFor(() => follower.live, 15_000);
  t.true(follower.live);
});
