import path from "node:path";
import { type Command, InvalidArgumentError } from "commander";
import { ErrorCode, MagistralError } from "../../src/errors.ts";
import type { AdapterMetadata, ServiceDef } from "../../src/registry.ts";
import type { AdminContext } from "./context.ts";
import { formatMs, formatTime, keyValues, table } from "./output.ts";
import { jsonSchema, readJson, type SchemaInput, xsdSchema } from "./schema-files.ts";

interface RegisterOptions {
  file?: string;
  owner?: string;
  version?: string;
  description?: string;
  timeoutMs?: number;
  concurrency?: number;
  maxPayloadBytes?: number;
  xsd?: string;
  root?: string;
  jsonSchema?: string;
  softwareName?: string;
  softwareVersion?: string;
  softwareVendor?: string;
  platform?: string;
  host?: string;
  cpu?: string;
  memoryMb?: number;
  os?: string;
  location?: string;
}

/** `services`, `service <id>` and `register-service`. */
export function register(program: Command, ctx: AdminContext): void {
  program
    .command("services")
    .description("list registered services")
    .action(async () => {
      const services = await ctx.call<ServiceDef[]>("service.list");
      services.sort((a, b) => a.id.localeCompare(b.id));
      ctx.print(services, serviceTable);
    });

  program
    .command("service")
    .description("show one service, with its policies and adapter metadata")
    .argument("<id>", "service id")
    .action(async (id: string) => {
      ctx.print(await ctx.call<ServiceDef>("service.get", { id }), serviceDetails);
    });

  program
    .command("register-service")
    .description("register a service, or update one; flags override --file")
    .argument("[id]", "service id; may come from --file instead")
    .option("--file <service.json>", "a service.put body {service, schema} or a bare service")
    .option("--owner <agency>", "the provider agency that owns the service")
    .option("--version <version>", "version of the service")
    .option("--description <text>", "what the service does")
    .option("--timeout-ms <ms>", "time one provider call may take", positiveInt)
    .option("--concurrency <n>", "calls in flight at once per broker node", positiveInt)
    .option("--max-payload-bytes <bytes>", "largest request payload", positiveInt)
    .option("--xsd <main.xsd>", "request schema; every .xsd in its folder is bundled")
    .option("--root <element>", "root element of requests, to route unnamed XML")
    .option("--json-schema <file>", "request schema as JSON Schema")
    .option("--software-name <name>", "adapter software")
    .option("--software-version <version>", "adapter software version")
    .option("--software-vendor <vendor>", "adapter software vendor")
    .option("--platform <platform>", "adapter runtime platform")
    .option("--host <host>", "adapter host")
    .option("--cpu <cpu>", "adapter CPU")
    .option("--memory-mb <mb>", "adapter memory", positiveInt)
    .option("--os <os>", "adapter operating system")
    .option("--location <location>", "adapter location (data centre)")
    .action(async (id: string | undefined, opts: RegisterOptions) => {
      const body = registerBody(id, opts);
      const def = await ctx.call<ServiceDef>("service.put", await onTopOf(ctx, body));
      ctx.print(def, (d) => `registered service ${d.id} ${d.version} (${schemaLabel(d)})`);
    });
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("a positive integer");
  return n;
}

/**
 * An update names only what changes; the bus wants the owner every time and
 * replaces adapter metadata whole, so both are filled in from the registry.
 */
async function onTopOf(ctx: AdminContext, body: ReturnType<typeof registerBody>) {
  const { service } = body;
  const before = await ctx
    .call<ServiceDef>("service.get", { id: service.id })
    .catch((err: unknown) => {
      if (err instanceof MagistralError && err.code === ErrorCode.NOT_FOUND) return undefined;
      throw err;
    });
  if (!before && service.owner === undefined) {
    throw new MagistralError(ErrorCode.BAD_REQUEST, `${service.id} is new: give its --owner`);
  }
  if (!before) return body;
  service.owner ??= before.owner;
  const adapter = service.adapter as AdapterMetadata | undefined;
  if (adapter) {
    service.adapter = {
      software: { ...before.adapter?.software, ...adapter.software },
      hardware: { ...before.adapter?.hardware, ...adapter.hardware },
    };
  }
  return body;
}

/** Builds the `service.put` body from --file, then the flags on top. */
export function registerBody(id: string | undefined, opts: RegisterOptions) {
  const base = opts.file ? bodyFromFile(opts.file) : { service: {} };
  const service: Record<string, unknown> = { ...base.service };
  service.id = id ?? service.id;
  const fields: [string, unknown][] = [
    ["owner", opts.owner],
    ["version", opts.version],
    ["description", opts.description],
    ["callTimeoutMs", opts.timeoutMs],
    ["concurrency", opts.concurrency],
    ["maxPayloadBytes", opts.maxPayloadBytes],
  ];
  for (const [key, value] of fields) if (value !== undefined) service[key] = value;
  const adapter = adapterFrom(opts, service.adapter as AdapterMetadata | undefined);
  if (adapter) service.adapter = adapter;
  if (typeof service.id !== "string") {
    throw new MagistralError(
      ErrorCode.BAD_REQUEST,
      "a service id is needed, as argument or in --file",
    );
  }
  const schema = schemaFrom(opts) ?? base.schema;
  return schema ? { service, schema } : { service };
}

function schemaFrom(opts: RegisterOptions): SchemaInput | undefined {
  if (opts.xsd && opts.jsonSchema) {
    throw new MagistralError(ErrorCode.BAD_REQUEST, "give --xsd or --json-schema, not both");
  }
  if (opts.xsd) return xsdSchema(opts.xsd, opts.root);
  if (opts.jsonSchema) return jsonSchema(opts.jsonSchema);
  if (opts.root) throw new MagistralError(ErrorCode.BAD_REQUEST, "--root goes with --xsd");
  return undefined;
}

/**
 * A service file is either the admin body `{service, schema}` or a bare
 * service. Its schema may name files instead of holding them:
 * `{"xsd": "main.xsd", "root": "Element"}` or `{"jsonSchema": "file.json"}`,
 * relative to the service file.
 */
function bodyFromFile(file: string): { service: Record<string, unknown>; schema?: SchemaInput } {
  const value = readJson(file);
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new MagistralError(ErrorCode.BAD_REQUEST, `${file}: expected a JSON object`);
  }
  const body = value as Record<string, unknown>;
  if (typeof body.service !== "object" || body.service === null) return { service: body };
  const dir = path.dirname(path.resolve(file));
  const schema = body.schema as Record<string, unknown> | undefined;
  return { service: body.service as Record<string, unknown>, schema: schemaFromFile(dir, schema) };
}

function schemaFromFile(dir: string, schema: Record<string, unknown> | undefined) {
  if (!schema) return undefined;
  if (typeof schema.xsd === "string") {
    const root = typeof schema.root === "string" ? schema.root : undefined;
    return xsdSchema(path.resolve(dir, schema.xsd), root);
  }
  if (typeof schema.jsonSchema === "string")
    return jsonSchema(path.resolve(dir, schema.jsonSchema));
  return schema as SchemaInput;
}

function adapterFrom(opts: RegisterOptions, before: AdapterMetadata = {}) {
  const software = compact({
    name: opts.softwareName,
    version: opts.softwareVersion,
    vendor: opts.softwareVendor,
    platform: opts.platform,
  });
  const hardware = compact({
    host: opts.host,
    cpu: opts.cpu,
    memoryMb: opts.memoryMb,
    os: opts.os,
    location: opts.location,
  });
  if (!software && !hardware) return undefined;
  return {
    software: { ...before.software, ...software },
    hardware: { ...before.hardware, ...hardware },
  };
}

/** The object without its undefined fields, or undefined when none is left. */
function compact<T extends Record<string, unknown>>(obj: T): Partial<T> | undefined {
  const entries = Object.entries(obj).filter(([, v]) => v !== undefined);
  return entries.length ? (Object.fromEntries(entries) as Partial<T>) : undefined;
}

function schemaLabel(def: ServiceDef): string {
  const s = def.schema;
  if (!s) return "no schema";
  if (s.kind === "json") return `json rev ${s.revision}`;
  const root = s.rootElement ? ` {${s.namespace ?? ""}}${s.rootElement}` : "";
  return `xsd${root} rev ${s.revision}`;
}

function serviceTable(services: ServiceDef[]): string {
  return table(
    ["ID", "VERSION", "OWNER", "STATUS", "SCHEMA", "TIMEOUT"],
    services.map((s) => [
      s.id,
      s.version,
      s.owner,
      s.status,
      s.schema ? `${s.schema.kind}${s.schema.rootElement ? ` ${s.schema.rootElement}` : ""}` : "-",
      formatMs(s.callTimeoutMs),
    ]),
  );
}

function serviceDetails(s: ServiceDef): string {
  const sw = s.adapter?.software ?? {};
  const hw = s.adapter?.hardware ?? {};
  const r = s.retry;
  const software = [
    sw.name,
    sw.version,
    sw.vendor && `by ${sw.vendor}`,
    sw.platform && `on ${sw.platform}`,
  ];
  return keyValues([
    ["id", s.id],
    ["version", s.version],
    ["owner", s.owner],
    ["status", s.status],
    ["description", s.description],
    ["schema", schemaLabel(s)],
    ["call timeout", formatMs(s.callTimeoutMs)],
    ["concurrency", s.concurrency],
    ["max payload", `${s.maxPayloadBytes} bytes`],
    ["latency budget", formatMs(s.latencyBudgetMs)],
    ["providers", s.broadcast ? `broadcast to ${s.providers.join(", ")}` : undefined],
    ["retry", r && retryLabel(r)],
    ["circuit", s.circuit && circuitLabel(s.circuit)],
    ["lifetime", r && `${formatMs(r.lifetimeMs)} (at most ${formatMs(r.maxLifetimeMs)})`],
    ["software", joinPresent(software)],
    ["host", hw.host],
    ["hardware", joinPresent([hw.cpu, hw.memoryMb && `${hw.memoryMb} MB`, hw.os])],
    ["location", hw.location],
    ["registered", formatTime(s.registeredAt)],
    ["updated", formatTime(s.updatedAt)],
  ]);
}

function retryLabel(r: ServiceDef["retry"]): string {
  const delays = `${formatMs(r.firstDelayMs)} x${r.factor} up to ${formatMs(r.maxDelayMs)}`;
  return `${r.attempts} attempts, ${delays}, jitter ${r.jitter}`;
}

function circuitLabel(c: ServiceDef["circuit"]): string {
  const percent = Math.round(c.failureRate * 100);
  const rate = `${percent}% of ${c.minCalls}+ calls in ${formatMs(c.windowMs)}`;
  const inARow = `${c.consecutiveFailures} failures in a row`;
  return `opens after ${inARow} or ${rate}, for ${formatMs(c.openMs)}`;
}

function joinPresent(parts: (string | number | undefined | 0 | "")[]): string | undefined {
  const present = parts.filter((p) => p !== undefined && p !== "" && p !== 0);
  return present.length ? present.join(" ") : undefined;
}
