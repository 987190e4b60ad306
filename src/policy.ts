import type { Envelope } from "./envelope.ts";
import { ErrorCode, MagistralError } from "./errors.ts";
import { assertToken } from "./ids.ts";
import type { NodeContext } from "./node-context.ts";
import { type LimitRule, RateLimiter } from "./rate-limit.ts";
import type { Agency, ServiceDef } from "./registry.ts";
import { defaultVerifiers } from "./signature.ts";

/**
 * Who may call a service and how much. Stored on the service definition in
 * the services bucket, so every broker node applies a change as soon as its
 * registry follower sees it. Payload size (`maxPayloadBytes`), the lifetime
 * ceiling (`retry.maxLifetimeMs`) and the schema live beside it on the service.
 */
export interface ServicePolicy {
  /** Consumer agencies allowed to call; with `consumerGroups` also empty, any consumer may. */
  consumers: string[];
  /** Agency groups allowed to call (an agency's `groups`). */
  consumerGroups: string[];
  /** Requests per second per consumer agency, across all broker nodes; 0: no limit. */
  ratePerSecond: number;
  /** Requests a consumer may send at once after being idle; 0: one second's worth. */
  burst: number;
  /** Accepted requests per consumer agency per UTC day; 0: no quota. */
  dailyQuota: number;
  /** Whether every request must carry a valid signature of its sender. */
  signatureRequired: boolean;
  /** Whether requests flagged `test` are accepted. */
  acceptTest: boolean;
}

export const DEFAULT_POLICY: ServicePolicy = {
  consumers: [],
  consumerGroups: [],
  ratePerSecond: 0,
  burst: 0,
  dailyQuota: 0,
  signatureRequired: false,
  acceptTest: true,
};

/** A service's policy with every field present. */
export function policyOf(def: ServiceDef): ServicePolicy {
  return { ...DEFAULT_POLICY, ...def.policy };
}

/**
 * A policy update applied to `before`: only the fields given change.
 * @throws MagistralError BAD_REQUEST naming the first invalid field
 */
export function mergePolicy(before: ServicePolicy | undefined, input: unknown): ServicePolicy {
  if (input === undefined || input === null) return { ...DEFAULT_POLICY, ...before };
  if (typeof input !== "object" || Array.isArray(input)) badPolicy("policy must be a map");
  const given = input as Record<string, unknown>;
  const merged: ServicePolicy = { ...DEFAULT_POLICY, ...before };
  if (given.consumers !== undefined) merged.consumers = tokenList(given.consumers, "consumers");
  if (given.consumerGroups !== undefined) {
    merged.consumerGroups = tokenList(given.consumerGroups, "consumerGroups");
  }
  for (const key of ["ratePerSecond", "burst", "dailyQuota"] as const) {
    if (given[key] !== undefined) merged[key] = nonNegative(given[key], key);
  }
  for (const key of ["signatureRequired", "acceptTest"] as const) {
    if (given[key] === undefined) continue;
    if (typeof given[key] !== "boolean") badPolicy(`${key} must be true or false`);
    merged[key] = given[key];
  }
  return merged;
}

function tokenList(value: unknown, name: string): string[] {
  if (!Array.isArray(value)) badPolicy(`${name} must be a list of ids`);
  return [...new Set(value.map((v) => assertToken(v, name)))];
}

function nonNegative(value: unknown, name: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    badPolicy(`${name} must be a number, 0 or more`);
  }
  return value;
}

function badPolicy(message: string): never {
  throw new MagistralError(ErrorCode.BAD_REQUEST, message);
}

/** The limiter's view of a policy, or undefined when the service sets no limit. */
function limitRule(policy: ServicePolicy): LimitRule | undefined {
  if (policy.ratePerSecond <= 0 && policy.dailyQuota <= 0) return undefined;
  return {
    ratePerSecond: policy.ratePerSecond,
    burst: policy.burst > 0 ? policy.burst : Math.max(1, Math.ceil(policy.ratePerSecond)),
    dailyQuota: policy.dailyQuota,
  };
}

/**
 * Applies services' policies to submitted requests. Every refusal is a
 * MagistralError with its code, which the submit path journals.
 */
export class PolicyGate {
  readonly verifiers = defaultVerifiers;
  private readonly limiter: RateLimiter;

  constructor(ctx: NodeContext) {
    this.limiter = new RateLimiter(ctx.bus, ctx.log.child({ component: "rate-limit" }));
  }

  /**
   * The checks that need no I/O: role, access list, test traffic, a limit
   * already known to be spent, and the signature.
   * @throws MagistralError ACCESS_DENIED, RATE_LIMITED, QUOTA_EXCEEDED,
   *   SIGNATURE_REQUIRED, SIGNATURE_INVALID
   */
  authorize(sender: Agency, def: ServiceDef, env: Envelope): void {
    const policy = policyOf(def);
    if (!sender.roles.includes("consumer")) {
      throw new MagistralError(ErrorCode.ACCESS_DENIED, `agency ${sender.id} is not a consumer`);
    }
    if (!mayCall(sender, policy)) {
      throw new MagistralError(ErrorCode.ACCESS_DENIED, `${sender.id} may not call ${def.id}`);
    }
    if (env.test && !policy.acceptTest) {
      throw new MagistralError(ErrorCode.ACCESS_DENIED, `${def.id} takes no test traffic`);
    }
    const rule = limitRule(policy);
    if (rule) this.limiter.precheck(def.id, sender.id, rule);
    this.verifiers.checkRequest(sender, env, policy.signatureRequired);
  }

  /**
   * Spends one unit of the consumer's rate limit and daily quota, agreed
   * with every other broker node. Called last, so refused requests cost none.
   * @throws MagistralError RATE_LIMITED, QUOTA_EXCEEDED, UNAVAILABLE
   */
  async admit(sender: Agency, def: ServiceDef): Promise<void> {
    const rule = limitRule(policyOf(def));
    if (rule) await this.limiter.take(def.id, sender.id, rule);
  }
}

function mayCall(sender: Agency, policy: ServicePolicy): boolean {
  if (policy.consumers.length === 0 && policy.consumerGroups.length === 0) return true;
  if (policy.consumers.includes(sender.id)) return true;
  return (sender.groups ?? []).some((g) => policy.consumerGroups.includes(g));
}
