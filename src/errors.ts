/**
 * Every error the bus returns to an agency or raises inside a node carries a
 * stable `code`. Callers branch on the code, never on the message text.
 */
export const ErrorCode = {
  /** The envelope could not be decoded or a field has the wrong type. */
  BAD_ENVELOPE: "BAD_ENVELOPE",
  /** The request names no service and none is registered for its XML root. */
  UNKNOWN_SERVICE: "UNKNOWN_SERVICE",
  /** The service exists but is suspended or retired. */
  SERVICE_SUSPENDED: "SERVICE_SUSPENDED",
  /** The payload does not satisfy the service's registered schema. */
  SCHEMA_INVALID: "SCHEMA_INVALID",
  /** The payload is larger than the service allows. */
  PAYLOAD_TOO_LARGE: "PAYLOAD_TOO_LARGE",
  /** The agency may not do this. */
  ACCESS_DENIED: "ACCESS_DENIED",
  /** The message's lifetime ended before it could be delivered. */
  EXPIRED: "EXPIRED",
  /** The message id is already taken by another agency's message. */
  DUPLICATE_ID: "DUPLICATE_ID",
  /** An admin or status query named something that does not exist. */
  NOT_FOUND: "NOT_FOUND",
  /** An admin command carried invalid arguments. */
  BAD_REQUEST: "BAD_REQUEST",
  /** The bus could not persist the message; nothing was accepted. Retry. */
  UNAVAILABLE: "UNAVAILABLE",
  /** The provider did not answer within the call timeout. */
  PROVIDER_TIMEOUT: "PROVIDER_TIMEOUT",
  /** No provider adapter is listening for the service. */
  NO_PROVIDER: "NO_PROVIDER",
  /** The provider answered with a fault. */
  PROVIDER_FAULT: "PROVIDER_FAULT",
  /** An unexpected failure inside the bus. */
  INTERNAL: "INTERNAL",
  /** The consumer sends faster than the service's rate limit allows. Send again later. */
  RATE_LIMITED: "RATE_LIMITED",
  /** The consumer has used its daily quota for the service; it renews at 00:00 UTC. */
  QUOTA_EXCEEDED: "QUOTA_EXCEEDED",
  /** The service requires signed requests and the request carries no signature. */
  SIGNATURE_REQUIRED: "SIGNATURE_REQUIRED",
  /** The signature does not verify, or its key id is not one of the sender's keys. */
  SIGNATURE_INVALID: "SIGNATURE_INVALID",
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const RETRYABLE: ReadonlySet<ErrorCode> = new Set([
  ErrorCode.UNAVAILABLE,
  ErrorCode.PROVIDER_TIMEOUT,
  ErrorCode.NO_PROVIDER,
  ErrorCode.PROVIDER_FAULT,
  ErrorCode.INTERNAL,
  ErrorCode.RATE_LIMITED,
]);

/** Whether the same input may succeed if sent again later. */
export function isRetryable(code: ErrorCode): boolean {
  return RETRYABLE.has(code);
}

export class MagistralError extends Error {
  override readonly name = "MagistralError";
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.retryable = isRetryable(code);
  }

  /** The wire form of this error, as sent in API replies and statuses. */
  toWire(): WireError {
    return { code: this.code, message: this.message, retryable: this.retryable };
  }
}

export interface WireError {
  code: ErrorCode;
  message: string;
  retryable: boolean;
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.hasOwn(ErrorCode, value);
}

/** Wraps anything thrown into a MagistralError, keeping the original as cause. */
export function toMagistralError(err: unknown, fallback: ErrorCode = ErrorCode.INTERNAL) {
  if (err instanceof MagistralError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new MagistralError(fallback, message, { cause: err });
}
