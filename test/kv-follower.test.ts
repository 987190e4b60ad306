// The KV follower against a real nats-server: what it hands over on a
// periodic refresh of its watch, and after the server restarts.
import path from "node:path";
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
