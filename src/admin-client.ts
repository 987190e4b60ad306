import { type ConnectionOptions, connect, type NatsConnection } from "@nats-io/transport-node";
import { decodeValue, encodeValue } from "./envelope.ts";
import type { WireError } from "./errors.ts";
import { MagistralError } from "./errors.ts";

/** A client of the operators' API `mg.admin.<noun>.<verb>`. */
export class AdminClient {
  private constructor(readonly nc: NatsConnection) {}

  static async connect(nats: ConnectionOptions): Promise<AdminClient> {
    return new AdminClient(
      await connect({ name: "magistral-admin", inboxPrefix: "_INBOX.operator", ...nats }),
    );
  }

  /** Calls one operation. @throws MagistralError with the bus's code on failure. */
  async call<T = unknown>(
    op: string,
    body: Record<string, unknown> = {},
    timeoutMs = 15_000,
  ): Promise<T> {
    const msg = await this.nc.request(`mg.admin.${op}`, encodeValue(body), { timeout: timeoutMs });
    const reply = decodeValue(msg.data) as { ok: boolean; result?: T; error?: WireError };
    if (!reply.ok) throw new MagistralError(reply.error!.code, reply.error!.message);
    return reply.result as T;
  }

  async close(): Promise<void> {
    await this.nc.drain().catch(() => {});
  }
}
