import type { Envelope } from "./envelope.ts";
import type { MessageEvent } from "./events.ts";
import type { JournalRetention } from "./registry.ts";

/**
 * Payloads larger than this are not kept in the journal even under `full`
 * retention: an event batch must stay under the server's 1 MiB message limit.
 */
export const MAX_RETAINED_PAYLOAD_BYTES = 512 * 1024;

type RetainedContent = Pick<MessageEvent, "payload" | "contentType" | "headers" | "payloadOmitted">;

/**
 * What the `accepted` event of a request carries of its content, by the
 * service's journal retention; services registered before retention
 * existed keep metadata only.
 */
export function retainedContent(
  retention: JournalRetention | undefined,
  env: Envelope,
): RetainedContent {
  const mode = retention ?? "metadata";
  if (mode === "none") return {};
  const content: RetainedContent = {};
  if (env.contentType !== undefined) content.contentType = env.contentType;
  if (env.headers !== undefined) content.headers = env.headers;
  if (mode !== "full") return content;
  // LIMITATION: a payload over 512 KiB is not journaled even under full retention.
  if (env.payload.length <= MAX_RETAINED_PAYLOAD_BYTES) content.payload = env.payload;
  else content.payloadOmitted = true;
  return content;
}
