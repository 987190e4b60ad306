import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import test from "ava";
import { localTopology } from "../cluster/local.ts";
import { natsServerBinary } from "../cluster/nats-server.ts";
import { isRunning } from "../cluster/processes.ts";
import { renderNatsConfig, writeNatsConfigs } from "../cluster/render.ts";
import type { ClusterStatus } from "../cluster/status.ts";
import { parseTopology, withBrokers } from "../cluster/topology.ts";
import { ErrorCode, MagistralError } from "../src/errors.ts";
import { runAdminCli } from "./helpers/admin-cli.ts";
import { tempDir } from "./helpers/nats.ts";

const node = (name: string, base: number) => ({
  name,
  clientPort: base,
  clusterPort: base + 1,
  monitorPort: base + 2,
});

test("topology: paths resolve under the data dir, defaults fill in, brokers can be reshaped", (t) => {
  const topology = parseTopology(
    { dataDir: "run/cluster", nats: [node("n1", 5000), node("n2", 5010), node("n3", 5020)] },
    "/srv/mg",
  );
  t.is(topology.name, "magistral");
  t.is(topology.dataDir, "/srv/mg/run/cluster");
  t.is(topology.replicas, 3);
  t.is(topology.nats[1]?.storeDir, "/srv/mg/run/cluster/n2");
  t.is(topology.nats[0]?.host, "127.0.0.1");
  t.deepEqual(topology.brokers, []);
  const three = withBrokers(topology, 3);
  t.deepEqual(
    three.brokers.map((b) => [b.id, b.dataDir]),
    [1, 2, 3].map((i) => [`b${i}`, `/srv/mg/run/cluster/b${i}`]),
  );
});

test("topology: a wrong field is refused as BAD_REQUEST naming it", (t) => {
  const cases: [unknown, RegExp][] = [
    [{ nats: [] }, /at least one node/],
    [{ nats: [{ ...node("n1", 5000), clientPort: 70_000 }] }, /nats\[0\]\.clientPort/],
    [{ nats: [node("n1", 5000), node("n1", 5010)] }, /n1 is used twice/],
    [{ nats: [node("n1", 5000), node("n2", 5001)] }, /127\.0\.0\.1:5001 is used twice/],
    [{ nats: [node("n1", 5000)], replicas: 3 }, /replicas/],
    [{ nats: [node("N 1", 5000)] }, /nats\[0\]\.name/],
    [{ nats: [node("n1", 5000)], brokers: [{ id: "n1" }] }, /n1 is used twice/],
  ];
  for (const [raw, message] of cases) {
    const err = t.throws(() => parseTopology(raw, "/tmp"), { instanceOf: MagistralError });
    t.is(err?.code, ErrorCode.BAD_REQUEST);
    t.regex(err?.message ?? "", message);
  }
});

test("render: each node routes to the others, and nats-server accepts the config", (t) => {
  const dir = tempDir(t);
  const topology = parseTopology(
    { name: "east", nats: [node("n1", 5000), node("n2", 5010), node("n3", 5020)] },
    dir,
  );
  const authorization = 'authorization {\n  users: [{ user: "ops", password: "secret-secret" }]\n}';
  const text = renderNatsConfig(topology, "n2", { authorization });
  t.regex(text, /server_name: "n2"/);
  t.regex(text, /listen: "127\.0\.0\.1:5010"/);
  t.regex(text, /http: "127\.0\.0\.1:5012"/);
  t.regex(text, /name: "east"/);
  t.regex(text, /listen: "127\.0\.0\.1:5011"/);
  t.regex(text, /"nats-route:\/\/127\.0\.0\.1:5001"\n\s+"nats-route:\/\/127\.0\.0\.1:5021"/);
  t.notRegex(text, /5011"\n\s+\]/, "no route to itself");
  t.true(text.includes(`store_dir: ${JSON.stringify(path.join(dir, "data/cluster/n2"))}`));
  t.true(text.trimEnd().endsWith(authorization));
  t.notRegex(renderNatsConfig(topology, "n1"), /authorization/);

  const files = writeNatsConfigs(topology, { authorization });
  const bin = natsServerBinary();
  t.truthy(bin, "nats-server is installed");
  for (const file of Object.values(files)) {
    const check = spawnSync(bin!, ["-t", "-c", file], { encoding: "utf8" });
    t.is(check.status, 0, check.stderr);
  }
});

test("admin script: cluster up, status, kill and start a node, stop a broker, down", async (t) => {
  const dir = tempDir(t, "mg-cluster-cli-");
  const topology = await localTopology({ dataDir: dir, brokers: 1 });
  const file = path.join(dir, "topology.json");
  writeFileSync(file, JSON.stringify({ ...topology, brokers: [{ id: "b1" }] }));
  const cli = (...args: string[]) => runAdminCli(["cluster", "--topology", file, ...args]);
  t.teardown(() => cli("down"));
  const status = async () => {
    const run = await runAdminCli(["--json", "cluster", "--topology", file, "status"]);
    t.is(run.code, 0, run.stderr);
    return JSON.parse(run.stdout) as ClusterStatus;
  };

  const up = await cli("up", "--brokers", "2");
  t.is(up.code, 0, up.stderr);
  t.regex(up.stdout, /cluster magistral is up/);
  let s = await status();
  t.deepEqual(
    s.nats.map((n) => n.up),
    [true, true, true],
  );
  t.truthy(s.metaLeader);
  t.true(s.streams.length >= 10);
  t.true(s.streams.every((st) => st.leader !== undefined && st.replicas.length === 2));
  t.deepEqual(
    s.brokers.filter((b) => b.alive).map((b) => b.node),
    ["b1", "b2"],
  );

  const leader = s.metaLeader!;
  t.is((await cli("kill", leader)).code, 0);
  s = await status();
  t.false(s.nats.find((n) => n.name === leader)?.up);
  t.is((await cli("start", leader)).code, 0);
  s = await status();
  t.true(s.nats.every((n) => n.up));
  t.truthy(s.metaLeader);

  // A broker that stops cleanly deletes its heartbeat: it is gone, not "lost".
  t.is((await cli("stop", "b2")).code, 0);
  s = await status();
  t.deepEqual(
    s.brokers.map((b) => b.node),
    ["b1"],
  );

  const pids = s.nats.map((n) => n.localPid).filter((pid) => pid !== undefined);
  t.is(pids.length, 3, "the state file knows every NATS process");
  const down = await cli("down");
  t.is(down.code, 0, down.stderr);
  t.false(existsSync(path.join(dir, "state.json")));
  t.true(pids.every((pid) => !isRunning(pid)));
});
