import type { StoredMsg } from "@nats-io/jetstream";
import { DLQ_HEADER, REPLAY_HEADER } from "./delivery.ts";
import { decodeEnvelope, type Envelope, encodeEnvelope } from "./envelope.ts";
import { ErrorCode, MagistralError } from "./errors.ts";
import type { NodeContext } from "./node-context.ts";
import type { RegistryView } from "./registry-view.ts";
import { lane, STREAM } from "./subjects.ts";

/** A dead letter as operators see it. */
export interface DeadLetter {
  seq: number;
  service: string;
  provider: string;
  id: string;
  consumer?: string;
  reason: string;
  reasonMessage: string;
  attempts: number;
  node: string;
  deadAt: number;
  envelope: Omit<Envelope, "payload"> & { payloadBytes: number };
}

export interface DeadLetterFilter {
  service?: string;
  seq?: number;
  /** Required to act on every dead letter of every service. */
  all?: boolean;
  limit?: number;
}

/** Messages of the stream looked at per list call. */
// LIMITATION: listing reads DEADLETTER message by message from its first
// sequence (nats-server 2.9 has no multi-subject or batch get); past about
// 10,000 dead letters a list or replay-all call takes seconds.
const MAX_SCAN = 10_000;

/** Operators' handling of DEADLETTER: list, show, replay with the same id, purge. */
export class DeadLetters {
  constructor(
    private readonly ctx: NodeContext,
    private readonly view: RegistryView,
  ) {}

  async list(filter: DeadLetterFilter): Promise<DeadLetter[]> {
    if (filter.seq !== undefined) return [await this.show(filter.seq)];
    const out: DeadLetter[] = [];
    const limit = filter.limit ?? 100;
    for await (const stored of this.scan()) {
      const letter = toDeadLetter(stored);
      if (filter.service && letter.service !== filter.service) continue;
      out.push(letter);
      if (out.length >= limit) break;
    }
    return out;
  }

  async show(seq: number): Promise<DeadLetter> {
    const stored = await this.get(seq);
    return toDeadLetter(stored);
  }

  /**
   * Puts dead letters back on their queue with their ids unchanged and a
   * new replay generation, then removes them from DEADLETTER.
   */
  async replay(filter: DeadLetterFilter): Promise<{ replayed: string[] }> {
    const targets = await this.select(filter);
    const replayed: string[] = [];
    for (const stored of targets) {
      const letter = toDeadLetter(stored);
      const env = decodeEnvelope(stored.data);
      const def = this.view.get(letter.service);
      if (!def) throw new MagistralError(ErrorCode.UNKNOWN_SERVICE, `no service ${letter.service}`);
      const generation = Number(env.headers?.[REPLAY_HEADER] ?? "0") + 1;
      const again: Envelope = {
        ...env,
        createdAt: Date.now(),
        headers: { ...env.headers, [REPLAY_HEADER]: String(generation) },
      };
      await this.ctx.bus.js.publish(
        lane(def.id, letter.provider, def.broadcast).queue,
        encodeEnvelope(again),
        {
          msgID: `${env.id}:replay:${letter.provider}:${generation}`,
        },
      );
      await this.ctx.bus.jsm.streams.deleteMessage(STREAM.deadletter, stored.seq, false);
      this.ctx.events.emit({
        type: "replayed",
        id: env.id,
        service: def.id,
        agency: env.sender,
        provider: letter.provider,
        test: env.test,
      });
      replayed.push(env.id);
    }
    return { replayed };
  }

  async purge(filter: DeadLetterFilter): Promise<{ purged: number }> {
    const targets = await this.select(filter);
    for (const stored of targets) {
      await this.ctx.bus.jsm.streams.deleteMessage(STREAM.deadletter, stored.seq, false);
    }
    return { purged: targets.length };
  }

  private async select(filter: DeadLetterFilter): Promise<StoredMsg[]> {
    if (filter.seq !== undefined) return [await this.get(filter.seq)];
    if (!filter.service && !filter.all) {
      throw new MagistralError(ErrorCode.BAD_REQUEST, "name a seq, a service, or all");
    }
    const out: StoredMsg[] = [];
    for await (const stored of this.scan()) {
      if (filter.service && toDeadLetter(stored).service !== filter.service) continue;
      out.push(stored);
    }
    return out;
  }

  private async get(seq: number): Promise<StoredMsg> {
    const stored = await this.ctx.bus.jsm.streams
      .getMessage(STREAM.deadletter, { seq })
      .catch(() => null);
    if (!stored) throw new MagistralError(ErrorCode.NOT_FOUND, `no dead letter ${seq}`);
    return stored;
  }

  private async *scan(): AsyncGenerator<StoredMsg> {
    const info = await this.ctx.bus.jsm.streams.info(STREAM.deadletter);
    const { first_seq: first, last_seq: last, messages } = info.state;
    if (messages === 0) return;
    const end = Math.min(last, first + MAX_SCAN - 1);
    for (let seq = first; seq <= end; seq++) {
      const stored = await this.ctx.bus.jsm.streams
        .getMessage(STREAM.deadletter, { seq })
        .catch(() => null);
      if (stored) yield stored;
    }
  }
}

function toDeadLetter(stored: StoredMsg): DeadLetter {
  const env = decodeEnvelope(stored.data);
  const h = stored.header;
  const { payload, ...rest } = env;
  return {
    seq: stored.seq,
    service: stored.subject.split(".")[2] ?? "",
    provider: h?.get(DLQ_HEADER.provider) ?? "",
    id: env.id,
    consumer: env.sender,
    reason: h?.get(DLQ_HEADER.reason) ?? "",
    reasonMessage: h?.get(DLQ_HEADER.message) ?? "",
    attempts: Number(h?.get(DLQ_HEADER.attempts) ?? 0),
    node: h?.get(DLQ_HEADER.node) ?? "",
    deadAt: stored.time.getTime(),
    envelope: { ...rest, payloadBytes: payload.length },
  };
}
