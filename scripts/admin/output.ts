// Rendering helpers of the admin script: aligned tables, key/value blocks,
// durations and times. Plain text only, so output can be piped and grepped.

/** Renders rows under headers, each column padded to its widest cell. */
export function table(headers: string[], rows: (string | number | undefined)[][]): string {
  if (rows.length === 0) return "(none)";
  const cells = [
    headers,
    ...rows.map((row) => row.map((c) => (c === undefined ? "-" : String(c)))),
  ];
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? "").length)));
  return cells
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** Renders `key: value` lines with the values aligned; absent values are skipped. */
export function keyValues(pairs: [string, string | number | undefined][]): string {
  const present = pairs.filter(([, v]) => v !== undefined && v !== "");
  const width = Math.max(0, ...present.map(([k]) => k.length));
  return present.map(([k, v]) => `${`${k}:`.padEnd(width + 2)}${v}`).join("\n");
}

/** 250 -> "250ms", 10000 -> "10s", 90000 -> "1.5m", 86400000 -> "1d". */
export function formatMs(ms: number | undefined): string | undefined {
  if (ms === undefined || !Number.isFinite(ms)) return undefined;
  const units: [number, string][] = [
    [86_400_000, "d"],
    [3_600_000, "h"],
    [60_000, "m"],
    [1_000, "s"],
  ];
  for (const [size, unit] of units) {
    if (ms >= size) return `${trimNumber(ms / size)}${unit}`;
  }
  return `${Math.round(ms)}ms`;
}

function trimNumber(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(1).replace(/\.0$/, "");
}

/** An epoch time as UTC ISO 8601 with milliseconds. */
export function formatTime(epochMs: number | undefined): string | undefined {
  return epochMs === undefined ? undefined : new Date(epochMs).toISOString();
}

/** Writes one value as indented JSON, the `--json` form of every command. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, jsonSafe, 2)}\n`);
}

// MessagePack bin fields arrive as Buffers; JSON shows them as base64. The
// holder's own value is read because Buffer.toJSON runs before a replacer.
function jsonSafe(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key];
  if (raw instanceof Uint8Array) return Buffer.from(raw).toString("base64");
  return value;
}
