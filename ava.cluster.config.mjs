// The cluster tests, run after the others and one file at a time: they
// restart nats-servers of a three-node cluster, and sharing two cores with
// other test files made nats-server 2.9's replicas too slow to settle.
export default {
  files: ["test/cluster*.test.ts"],
  extensions: { ts: "module" },
  nodeArguments: ["--import=tsx"],
  workerThreads: false,
  timeout: "120s",
  concurrency: 1,
  environmentVariables: { MAGISTRAL_LOG_LEVEL: "warn" },
};
