import { randomUUID } from "node:crypto";
import { ErrorCode, MagistralError } from "./errors.ts";

/** Agency and service ids are single NATS subject tokens. */
const TOKEN = /^[a-z0-9_-]{1,64}$/;

/** Message ids: UUIDs and other client-chosen ids that are safe in headers and keys. */
const MESSAGE_ID = /^[A-Za-z0-9_-]{1,128}$/;

export function isToken(value: unknown): value is string {
  return typeof value === "string" && TOKEN.test(value);
}

export function isMessageId(value: unknown): value is string {
  return typeof value === "string" && MESSAGE_ID.test(value);
}

/** Throws BAD_REQUEST unless `value` is a valid agency or service id. */
export function assertToken(value: unknown, what: string): string {
  if (!isToken(value)) {
    throw new MagistralError(ErrorCode.BAD_REQUEST, `${what} must match ${TOKEN.source}`);
  }
  return value;
}

export function newMessageId(): string {
  return randomUUID();
}
