import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { ExecutionContext } from "ava";
import { type RunningNatsServer, startNatsServer } from "../../cluster/nats-server.ts";

/** A temporary directory removed when the test ends. */
export function tempDir(t: ExecutionContext, prefix = "mg-test-"): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A real single-node nats-server with JetStream on a free port, stopped at teardown. */
export async function natsServer(
  t: ExecutionContext,
  dir = tempDir(t),
): Promise<RunningNatsServer> {
  const server = await startNatsServer({
    name: `n-${path.basename(dir)}`,
    storeDir: path.join(dir, "js"),
  });
  t.teardown(() => server.kill());
  return server;
}
