import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startBrokerProcess } from "../../cluster/broker-process.ts";
import { type RunningNatsServer, startNatsServer } from "../../cluster/nats-server.ts";
import { AdminClient } from "../../src/admin-client.ts";
import { AgencyClient } from "../../src/client.ts";

/** How a chaos run ended: every accepted request must be answered exactly once. */
export interface ChaosResult {
  accepted: number;
  responded: number;
  duplicates: number;
  lost: number;
}

export interface ChaosOptions {
  /** Requests per second offered by the consumer. */
  rate: number;
  /** How long load is offered. */
  durationMs: number;
  log: (line: string) => void;
}

const _repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** A temporary directory for one run, removed by `cleanup`. */
export function runDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), "mg-chaos-"));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function startNats(dir: string, port = 0): Promise<RunningNatsServer> {
  return startNatsServer({ name: "chaos", port, storeDir: path.join(dir, "js") });
}

/** A broker node as a child process (what `npm start` runs), resolved once it is running. */
export function brokerProcess(servers: string, nodeId: string, dataDir: string) {
  return startBrokerProcess({ servers, nodeId, dataDir });
}

/** Registers a provider agency, a consumer agency and one service with fast retries. */
export async function setUp(servers: string, service: string) {
  const admin = await AdminClient.connect({ servers });
  await admin.call("agency.put", { id: "fns", name: "Tax service", roles: ["provider"] });
  await admin.call("agency.put", { id: "mfc", name: "Service centre", roles: ["consumer"] });
  await admin.call("service.put", {
    service: {
      id: service,
      owner: "fns",
      callTimeoutMs: 1_000,
      retry: { attempts: 100, firstDelayMs: 200, factor: 1.5, maxDelayMs: 1_000, jitter: 0.2 },
      circuit: { consecutiveFailures: 5, openMs: 500 },
    },
  });
  const provider = await AgencyClient.connect({ agency: "fns", nats: { servers } });
  const consumer = await AgencyClient.connect({ agency: "mfc", nats: { servers } });
  return { admin, provider, consumer };
}

/**
 * Offers load at a fixed rate and counts what comes back. A submit that
 * fails is retried with the same id, so an accepted request is counted once.
 */
export class Load {
  readonly accepted = new Set<string>();
  readonly answers = new Map<string, number>();
  private seq = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly consumer: AgencyClient,
    private readonly service: string,
  ) {}

  async start(rate: number): Promise<void> {
    await this.consumer.openReplies();
    void this.read();
    const intervalMs = Math.max(5, Math.round(1_000 / rate));
    this.timer = setInterval(
      () => void this.submitOne(`chaos-${Date.now()}-${this.seq++}`),
      intervalMs,
    );
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async submitOne(id: string, tries = 0): Promise<void> {
    try {
      await this.consumer.submit(this.service, `<Запрос n="${id}"/>`, { id });
      this.accepted.add(id);
    } catch {
      if (tries < 50) setTimeout(() => void this.submitOne(id, tries + 1), 200).unref();
    }
  }

  private async read() {
    for await (const reply of this.consumer.responses()) {
      reply.ack();
      const id = reply.envelope.correlationId!;
      this.answers.set(id, (this.answers.get(id) ?? 0) + 1);
    }
  }

  /** Waits until every accepted request is answered or `timeoutMs` passes. */
  async drain(timeoutMs: number, log: (line: string) => void): Promise<ChaosResult> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && [...this.accepted].some((id) => !this.answers.has(id))) {
      await sleep(500);
      log(`  draining: ${this.progress()}`);
    }
    return this.result();
  }

  progress(): string {
    return `accepted=${this.accepted.size} responded=${this.answers.size}`;
  }

  result(): ChaosResult {
    const responded = [...this.accepted].filter((id) => this.answers.has(id)).length;
    const duplicates = [...this.answers.values()].reduce((sum, n) => sum + (n - 1), 0);
    return {
      accepted: this.accepted.size,
      responded,
      duplicates,
      lost: this.accepted.size - responded,
    };
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Prints progress once a second while `work` runs. */
export async function withProgress<T>(
  load: Load,
  log: (l: string) => void,
  work: () => Promise<T>,
) {
  const started = Date.now();
  const ticker = setInterval(
    () => log(`  t+${Math.round((Date.now() - started) / 1000)}s ${load.progress()}`),
    1_000,
  );
  try {
    return await work();
  } finally {
    clearInterval(ticker);
  }
}
