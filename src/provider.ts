import type { Msg } from "@nats-io/transport-node";
import { decodeEnvelope, type Envelope, encodeEnvelope, PROTOCOL_VERSION } from "./envelope.ts";
import { ErrorCode } from "./errors.ts";
import { newMessageId } from "./ids.ts";

// The provider side of the agency SDK: answering the bus's calls.

/** What a provider handler returns: the response payload, or payload with content type. */
export type ProviderResult =
  | Uint8Array
  | string
  | { payload: Uint8Array | string; contentType?: string };
export type ProviderHandler = (request: Envelope) => ProviderResult | Promise<ProviderResult>;

/**
 * Thrown by a provider handler to answer with a fault. A fault that is not
 * retryable (the request can never succeed) ends delivery at once: the
 * consumer gets a final status. Any other error thrown is retried.
 */
export class ProviderFault extends Error {
  override readonly name = "ProviderFault";
  constructor(
    message: string,
    readonly retryable = true,
  ) {
    super(message);
  }
}

const encoder = new TextEncoder();

/**
 * Answers one call of the bus: the handler's result as a response, or a
 * fault when it throws (retried by the service's policy unless the fault
 * is a final ProviderFault).
 */
export async function serveCall(msg: Msg, handler: ProviderHandler): Promise<void> {
  let request: Envelope;
  try {
    request = decodeEnvelope(msg.data);
  } catch (err) {
    msg.respond(encodeEnvelope(fault("bad-call", err)));
    return;
  }
  try {
    const result = await handler(request);
    const { payload, contentType } =
      typeof result === "string" || result instanceof Uint8Array
        ? { payload: result, contentType: undefined }
        : result;
    const response: Envelope = {
      v: PROTOCOL_VERSION,
      id: newMessageId(),
      kind: "response",
      service: request.service,
      correlationId: request.id,
      createdAt: Date.now(),
      payload: typeof payload === "string" ? encoder.encode(payload) : payload,
      contentType: contentType ?? guessContentType(payload),
    };
    msg.respond(encodeEnvelope(response));
  } catch (err) {
    msg.respond(encodeEnvelope(fault(request.id, err)));
  }
}

function fault(correlationId: string, err: unknown): Envelope {
  const message = err instanceof Error ? err.message : String(err);
  return {
    v: PROTOCOL_VERSION,
    id: newMessageId(),
    kind: "status",
    correlationId: /^[A-Za-z0-9_-]{1,128}$/.test(correlationId) ? correlationId : undefined,
    createdAt: Date.now(),
    payload: new Uint8Array(0),
    error: {
      code: ErrorCode.PROVIDER_FAULT,
      message: message.slice(0, 1000),
      retryable: !(err instanceof ProviderFault && !err.retryable),
    },
  };
}

/** A content type from the payload's first character. */
export function guessContentType(payload: Uint8Array | string): string {
  const first =
    typeof payload === "string" ? payload.trimStart()[0] : String.fromCharCode(payload[0] ?? 0);
  if (first === "<") return "application/xml";
  if (first === "{" || first === "[") return "application/json";
  return "application/octet-stream";
}
