// The KV follower against a real nats-server: what it hands over on a
// periodic refresh of its watch, and after the server restarts.
import path from "node:path";
import { AckPolicy, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import test, { type ExecutionContext } from "ava";
import { startNatsServer } from "../cluster/nats-server.ts";
import { KvFollower } from "../src/kv-follower.ts";
import { componentLogger } from "../src/logger.ts";
import { waitFor } from "./helpers/bus.ts";
import { tempDir } from "./helpers/nats.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A nats-server of the test's own and a connection to it, both closed at teardown. */
async function serverConnection(t: ExecutionContext, name: string) {
  const server = await startNatsServer({ name, storeDir: path.join(tempDir(t), "js") });
  t.teardown(() => server.kill());
  const nc = await connect({ servers: server.url });
  t.teardown(() => nc.close());
  return nc;
}

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
  const nc = await serverConnection(t, "kv-remade");
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
  const nc = await serverConnection(t, "kv-blocked");
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

test("a watch whose consumer vanished is found silent and restarted; the change it missed arrives", async (t) => {
  const nc = await serverConnection(t, "kv-silent");
  const kv = await new Kvm(nc).create("silent");
  await kv.put("a", "1");
  const values = new Map<string, string>();
  const handlers = {
    put: (key: string, value: Uint8Array) => values.set(key, new TextDecoder().decode(value)),
    remove: (key: string) => values.delete(key),
  };
  const follower = new KvFollower(nc, kv, handlers, componentLogger("test"), 60_000, 300);
  t.teardown(() => follower.stop());
  await follower.start();

  // As when the NATS node that held the watch's consumer dies: no error, no end.
  const jsm = await jetstreamManager(nc);
  for await (const c of jsm.consumers.list("KV_silent"))
    await jsm.consumers.delete("KV_silent", c.name);
  await kv.put("a", "2");
  await waitFor(() => values.get("a") === "2", 10_000);
  t.is(values.get("a"), "2");
  await waitFor(() => follower.live, 5_000);
});

test("stop while a watch is being made ends the follower", async (t) => {
  const nc = await serverConnection(t, "kv-stop");
  const kv = await new Kvm(nc).create("stopping");
  await kv.put("a", "1");
  const follower = new KvFollower(
    nc,
    kv,
    { put: () => {}, remove: () => {} },
    componentLogger("test"),
  );
  void follower.start();
  const stopped = follower.stop().then(() => "stopped");
  const outcome = await Promise.race([stopped, sleep(5_000).then(() => "hung")]);
  t.is(outcome, "stopped");
  t.false(follower.live);
});

test("a refresh due while a long replay runs waits for it: the follower catches up", async (t) => {
  const nc = await serverConnection(t, "kv-long");
  const kv = await new Kvm(nc).create("long");
  await Promise.all(Array.from({ length: 20_000 }, (_, i) => kv.put(`k${i}`, "v")));
  let puts = 0;
  const follower = new KvFollower(
    nc,
    kv,
    { put: () => puts++, remove: () => {} },
    componentLogger("test"),
    10,
  );
  t.teardown(() => follower.stop());
  const caughtUp = await Promise.race([
    follower.start().then(() => true),
    sleep(15_000).then(() => false),
  ]);
  t.true(caughtUp, "the first replay finished");
  t.true(puts >= 20_000);
});
