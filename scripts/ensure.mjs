#!/usr/bin/env node
// Installs what `npm run demo` and `npm start` need on a fresh Debian machine:
// npm dependencies, and the nats-server binary when the user is root.
// Plain Node.js with no dependencies, so it runs before `npm install`.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

const run = (cmd, args) => spawnSync(cmd, args, { stdio: "inherit" }).status === 0;
const has = (cmd) => spawnSync(cmd, ["--version"], { stdio: "ignore" }).status === 0;

if (!existsSync("node_modules/.package-lock.json")) {
  console.log("ensure: installing npm dependencies");
  if (!run("npm", ["install", "--no-audit", "--no-fund"])) process.exit(1);
}

const natsServer = [process.env.NATS_SERVER_BIN, "nats-server", "/usr/sbin/nats-server"].find(
  (c) => c && has(c),
);
if (!natsServer) {
  if (process.getuid?.() !== 0) {
    console.error(
      "ensure: nats-server is missing; install it with: sudo apt-get install -y nats-server",
    );
    process.exit(1);
  }
  console.log("ensure: installing nats-server (apt-get install -y nats-server)");
  const ok =
    run("apt-get", ["update", "-qq"]) && run("apt-get", ["install", "-y", "-qq", "nats-server"]);
  if (!ok) process.exit(1);
}
