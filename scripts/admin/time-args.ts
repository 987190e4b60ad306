import { InvalidArgumentError } from "commander";

const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A time on the command line: `now`, a duration ago (`90s`, `15m`, `2h`,
 * `7d`), epoch milliseconds, or an ISO 8601 time.
 */
export function parseTimeArg(value: string, now = Date.now()): number {
  if (value === "now") return now;
  const ago = /^(\d+(?:\.\d+)?)([smhd])$/.exec(value);
  if (ago) return now - Number(ago[1]) * UNIT_MS[ago[2]!]!;
  if (/^\d+$/.test(value)) return Number(value);
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) {
    throw new InvalidArgumentError("a time: now, 15m, 2h, 7d, epoch ms or ISO 8601");
  }
  return ms;
}

export function parseCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("a positive integer");
  return n;
}
