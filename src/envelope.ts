import { Packr } from "msgpackr";
import { ErrorCode, isErrorCode, MagistralError, type WireError } from "./errors.ts";
import { isMessageId, isToken } from "./ids.ts";

export const PROTOCOL_VERSION = 1;

export type EnvelopeKind = "request" | "response" | "status" | "event";
const KINDS: ReadonlySet<string> = new Set(["request", "response", "status", "event"]);

/**
 * The one message shape of the bus. On the wire it is a plain MessagePack
 * map with these keys; `payload` and `signature` are MessagePack bin.
 */
export interface Envelope {
  v: number;
  id: string;
  kind: EnvelopeKind;
  /** Target service; a request may omit it when its payload is XML routed by root element. */
  service?: string;
  /** Set by the bus from the subject the request arrived on; ignored when sent by an agency. */
  sender?: string;
  /** On responses and statuses: the id of the request they answer. */
  correlationId?: string;
  /** On responses: the provider agency that answered. Set by the bus. */
  provider?: string;
  /** Milliseconds since the Unix epoch. */
  createdAt: number;
  /** Lifetime asked by the sender, from createdAt. */
  ttlMs?: number;
  headers?: Record<string, string>;
  contentType?: string;
  payload: Uint8Array;
  signature?: Uint8Array;
  keyId?: string;
  test?: boolean;
  /** On calls to a provider: the delivery attempt, starting at 1. Set by the bus. */
  attempt?: number;
  /** On statuses and faults. */
  error?: WireError;
}

export const LIMITS = {
  maxHeaders: 64,
  maxHeaderBytes: 1024,
  maxStringBytes: 256,
  maxTtlMs: 30 * 24 * 3600 * 1000,
} as const;

// Plain MessagePack with standard types only: no records, no extensions, so
// adapters in any language read it. 64-bit integers, which Go and Python
// encoders use for epoch milliseconds, decode to numbers; past 2^53 they
// lose precision, and the range checks below refuse them.
// An absent field is left out of a map (msgpackr would write JavaScript's
// `undefined` as an extension type other languages do not know), and an
// `undefined` elsewhere goes out as nil.
const packr = new Packr({
  // skipValues is a msgpackr option its type declarations do not list.
  ...({ skipValues: [undefined] } as object),
  useRecords: false,
  mapsAsObjects: true,
  moreTypes: false,
  int64AsType: "number",
  encodeUndefinedAsNil: true,
});

export function encodeEnvelope(env: Envelope): Uint8Array {
  // msgpackr writes integers past 32 bits as float64; as a BigInt,
  // createdAt goes out as int64, the type other languages expect.
  if (!Number.isSafeInteger(env.createdAt)) return packr.pack(env);
  return packr.pack({ ...env, createdAt: BigInt(env.createdAt) });
}

/** Encodes any plain value (API replies, events) in the same MessagePack form. */
export function encodeValue(value: unknown): Uint8Array {
  // LIMITATION: integers past 32 bits in these values (epoch milliseconds such
  // as `updatedAt` or `at`) go out as float64, not int64; adapters must read
  // those numeric fields leniently. Only the envelope's createdAt is int64.
  return packr.pack(value);
}

export function decodeValue(bytes: Uint8Array): unknown {
  try {
    return packr.unpack(bytes);
  } catch (err) {
    throw new MagistralError(ErrorCode.BAD_ENVELOPE, "not valid MessagePack", { cause: err });
  }
}

/**
 * Decodes and checks an envelope. Unknown keys are dropped (forward
 * compatibility); a known key of the wrong type is an error.
 * @throws MagistralError BAD_ENVELOPE
 */
export function decodeEnvelope(bytes: Uint8Array): Envelope {
  const raw = decodeValue(bytes);
  if (!isPlainObject(raw)) fail("envelope must be a map");

  const env: Envelope = {
    v: intField(raw, "v", true, 1, 255),
    id: messageId(raw.id, "id"),
    kind: kindField(raw.kind),
    createdAt: intField(raw, "createdAt", true, 0, Number.MAX_SAFE_INTEGER),
    payload: binField(raw, "payload", true),
  };
  if (env.v !== PROTOCOL_VERSION) fail(`unsupported protocol version ${env.v}`);

  copyOptional(env, raw);
  return env;
}

function copyOptional(env: Envelope, raw: Record<string, unknown>): void {
  if (raw.service !== undefined) env.service = tokenField(raw.service, "service");
  if (raw.sender !== undefined) env.sender = tokenField(raw.sender, "sender");
  if (raw.provider !== undefined) env.provider = tokenField(raw.provider, "provider");
  if (raw.correlationId !== undefined)
    env.correlationId = messageId(raw.correlationId, "correlationId");
  if (raw.ttlMs !== undefined) env.ttlMs = intField(raw, "ttlMs", true, 1, LIMITS.maxTtlMs);
  if (raw.headers !== undefined) env.headers = headersField(raw.headers);
  if (raw.contentType !== undefined) env.contentType = stringField(raw.contentType, "contentType");
  if (raw.signature !== undefined) env.signature = binField(raw, "signature", true);
  if (raw.keyId !== undefined) env.keyId = stringField(raw.keyId, "keyId");
  if (raw.test !== undefined) env.test = boolField(raw.test, "test");
  if (raw.attempt !== undefined) env.attempt = intField(raw, "attempt", true, 1, 1_000_000);
  if (raw.error !== undefined) env.error = errorField(raw.error);
}

function fail(message: string): never {
  throw new MagistralError(ErrorCode.BAD_ENVELOPE, message);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    !(value instanceof Uint8Array)
  );
}

function intField(
  raw: Record<string, unknown>,
  key: string,
  required: boolean,
  min: number,
  max: number,
): number {
  const value = raw[key];
  if (value === undefined && !required) return 0;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    fail(`${key} must be an integer in [${min}, ${max}]`);
  }
  return value;
}

function binField(raw: Record<string, unknown>, key: string, required: boolean): Uint8Array {
  const value = raw[key];
  if (value instanceof Uint8Array) return value;
  if (value === undefined && !required) return new Uint8Array(0);
  return fail(`${key} must be bin`);
}

function stringField(value: unknown, key: string): string {
  if (typeof value !== "string" || Buffer.byteLength(value) > LIMITS.maxStringBytes) {
    fail(`${key} must be a string of at most ${LIMITS.maxStringBytes} bytes`);
  }
  if (value.includes("\0")) fail(`${key} must not contain NUL`);
  return value;
}

function tokenField(value: unknown, key: string): string {
  if (!isToken(value)) fail(`${key} must be an id of [a-z0-9_-], 1 to 64 characters`);
  return value;
}

function messageId(value: unknown, key: string): string {
  if (!isMessageId(value))
    fail(`${key} must be a message id of [A-Za-z0-9_-], 1 to 128 characters`);
  return value;
}

function kindField(value: unknown): EnvelopeKind {
  if (typeof value !== "string" || !KINDS.has(value))
    fail("kind must be request, response, status or event");
  return value as EnvelopeKind;
}

function boolField(value: unknown, key: string): boolean {
  if (typeof value !== "boolean") fail(`${key} must be a boolean`);
  return value;
}

function headersField(value: unknown): Record<string, string> {
  if (!isPlainObject(value)) fail("headers must be a map of strings");
  const entries = Object.entries(value);
  if (entries.length > LIMITS.maxHeaders) fail(`at most ${LIMITS.maxHeaders} headers`);
  const headers: Record<string, string> = {};
  for (const [name, v] of entries) {
    if (
      typeof v !== "string" ||
      name.length === 0 ||
      Buffer.byteLength(name) > LIMITS.maxStringBytes ||
      Buffer.byteLength(v) > LIMITS.maxHeaderBytes
    ) {
      fail("headers must be a map of short strings");
    }
    if (name.includes("\0") || v.includes("\0")) fail("headers must not contain NUL");
    headers[name] = v;
  }
  return headers;
}

function errorField(value: unknown): WireError {
  if (!isPlainObject(value) || !isErrorCode(value.code) || typeof value.message !== "string") {
    fail("error must be a map with a known code and a message");
  }
  return {
    code: value.code,
    message: value.message.slice(0, 1024),
    retryable: value.retryable === true,
  };
}
