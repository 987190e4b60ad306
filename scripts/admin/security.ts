import { existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { createUser } from "@nats-io/nkeys";
import { type Command, InvalidArgumentError } from "commander";
import { hashPassword, type SystemUser } from "../../src/auth.ts";
import { applyAuthorization } from "../../src/auth-sync.ts";
import { loadConfig } from "../../src/config.ts";
import { readSystemUsers } from "../../src/credentials.ts";
import { readRuntime } from "../../src/embedded.ts";
import { ErrorCode, MagistralError } from "../../src/errors.ts";
import type { ServicePolicy } from "../../src/policy.ts";
import type { Agency, SigningKey } from "../../src/registry.ts";
import { generateSigningKey } from "../../src/signature.ts";
import { splitList } from "./agencies.ts";
import type { AdminContext } from "./context.ts";
import { keyValues } from "./output.ts";

interface CredentialOptions {
  nkey?: string;
  generateNkey?: string;
  passwordStdin?: boolean;
  removePassword?: boolean;
  signingKey: string[];
  generateSigningKey?: string;
  privateKeyOut?: string;
  groups?: string;
}

interface PolicyOptions {
  consumers?: string;
  groups?: string;
  rate?: number;
  burst?: number;
  dailyQuota?: number;
  signatureRequired?: boolean;
  acceptTest?: boolean;
}

interface AuthOptions {
  authFile?: string;
  pid?: number;
  systemNkey: string[];
  out?: string;
}

/** `agency-credentials`, `policy`, `set-policy`, `auth render` and `auth reload`. */
export function register(program: Command, ctx: AdminContext): void {
  program
    .command("agency-credentials")
    .description("set how an agency logs in to NATS and signs requests, and its groups")
    .argument("<id>", "a registered agency")
    .option("--nkey <public-keys>", "its nkey public keys (U...), comma-separated, at most two")
    .option("--generate-nkey <seed-file>", "make a new nkey, write its seed here, register it")
    .option("--password-stdin", "read a password from stdin; only its bcrypt hash is sent")
    .option("--remove-password", "log in by nkey only")
    .option("--signing-key <keyId=base64>", "an Ed25519 public key; repeat for more", collect, [])
    .option("--generate-signing-key <keyId>", "make an Ed25519 key pair and register it")
    .option("--private-key-out <file>", "where --generate-signing-key writes the private key")
    .option("--groups <groups>", "comma-separated groups that access lists may name")
    .action(async (id: string, opts: CredentialOptions) => {
      const body = await credentialsBody(ctx, id, opts);
      const agency = await ctx.call<Agency>("agency.put", body);
      ctx.print(agency, credentialsSummary);
    });

  program
    .command("policy")
    .description("show a service's policy")
    .argument("<service>", "service id")
    .action(async (service: string) => {
      ctx.print(await ctx.call<ServicePolicy>("policy.get", { service }), policyText);
    });

  program
    .command("set-policy")
    .description("change a service's policy; every broker node applies it at once")
    .argument("<service>", "service id")
    .option("--consumers <agencies>", "agencies that may call it, comma-separated ('' for any)")
    .option("--groups <groups>", "agency groups that may call it, comma-separated")
    .option("--rate <per-second>", "requests per second per consumer, 0 for none", number)
    .option("--burst <requests>", "requests at once after an idle time", number)
    .option("--daily-quota <requests>", "requests per consumer per UTC day, 0 for none", number)
    .option("--signature-required", "requests must be signed")
    .option("--no-signature-required", "signatures are optional")
    .option("--accept-test", "accept requests flagged as test")
    .option("--no-accept-test", "refuse requests flagged as test")
    .action(async (service: string, opts: PolicyOptions) => {
      const policy = await ctx.call<ServicePolicy>("policy.put", {
        service,
        policy: policyBody(opts),
      });
      ctx.print(policy, policyText);
    });

  const auth = program.command("auth").description("NATS authorization rendered from the registry");
  auth
    .command("render")
    .description("print (or write) the authorization block of the registry as it is")
    .option("--system-nkey <public-key>", "a user of the bus with full access", collect, [])
    .option("--out <file>", "write it to this file instead of printing it")
    .action(async (opts: AuthOptions) => {
      const text = await render(ctx, opts);
      if (opts.out) writeFileSync(opts.out, text, { mode: 0o600 });
      else process.stdout.write(text);
    });
  auth
    .command("reload")
    .description("install the rendered authorization and make the server reload it")
    .option(
      "--auth-file <file>",
      "the file the server's config includes (default: the running bus's)",
    )
    .option("--pid <pid>", "the nats-server process to signal (default: the running bus's)", number)
    .option("--system-nkey <public-key>", "a user of the bus with full access", collect, [])
    .action(async (opts: AuthOptions) => {
      const text = await render(ctx, opts);
      const target = reloadTarget(opts);
      const changed = applyAuthorization(text, [target]);
      const what = changed.length > 0 ? "written and reloaded" : "unchanged";
      ctx.print({ authFile: target.authFile, reloaded: changed.length > 0 }, () => {
        return `authorization ${what}: ${target.authFile}`;
      });
    });
}

async function credentialsBody(ctx: AdminContext, id: string, opts: CredentialOptions) {
  const agencies = await ctx.call<Agency[]>("agency.list");
  const before = agencies.find((a) => a.id === id);
  if (!before) throw new MagistralError(ErrorCode.NOT_FOUND, `no agency ${id}`);
  const body: Record<string, unknown> = {
    id,
    name: before.name,
    roles: before.roles,
    contact: before.contact,
  };
  const credentials: Record<string, unknown> = {};
  if (opts.nkey) credentials.nkeys = splitList(opts.nkey);
  if (opts.generateNkey) credentials.nkeys = [writeNewNkey(opts.generateNkey)];
  if (opts.passwordStdin) credentials.passwordHash = hashPassword(await readStdin());
  if (opts.removePassword) credentials.passwordHash = null;
  if (Object.keys(credentials).length > 0) body.credentials = credentials;
  const keys = signingKeys(opts);
  if (keys) body.signingKeys = [...(before.signingKeys ?? []), ...keys];
  if (opts.groups !== undefined) body.groups = splitList(opts.groups);
  return body;
}

function writeNewNkey(file: string): string {
  if (existsSync(file)) throw new MagistralError(ErrorCode.BAD_REQUEST, `${file} exists`);
  const pair = createUser();
  writeFileSync(file, `${new TextDecoder().decode(pair.getSeed())}\n`, { mode: 0o600 });
  return pair.getPublicKey();
}

function signingKeys(opts: CredentialOptions): SigningKey[] | undefined {
  const keys: SigningKey[] = opts.signingKey.map((spec) => {
    const eq = spec.indexOf("=");
    if (eq <= 0) throw new MagistralError(ErrorCode.BAD_REQUEST, "--signing-key keyId=base64");
    return { keyId: spec.slice(0, eq), algorithm: "ed25519", publicKey: spec.slice(eq + 1) };
  });
  if (opts.generateSigningKey) {
    if (!opts.privateKeyOut) {
      throw new MagistralError(
        ErrorCode.BAD_REQUEST,
        "--generate-signing-key needs --private-key-out",
      );
    }
    if (existsSync(opts.privateKeyOut)) {
      throw new MagistralError(ErrorCode.BAD_REQUEST, `${opts.privateKeyOut} exists`);
    }
    const { key, privateKeyPem } = generateSigningKey(opts.generateSigningKey);
    writeFileSync(opts.privateKeyOut, privateKeyPem, { mode: 0o600 });
    keys.push(key);
  }
  return keys.length > 0 ? keys : undefined;
}

function policyBody(opts: PolicyOptions): Partial<ServicePolicy> {
  const policy: Partial<ServicePolicy> = {};
  if (opts.consumers !== undefined) policy.consumers = splitList(opts.consumers);
  if (opts.groups !== undefined) policy.consumerGroups = splitList(opts.groups);
  if (opts.rate !== undefined) policy.ratePerSecond = opts.rate;
  if (opts.burst !== undefined) policy.burst = opts.burst;
  if (opts.dailyQuota !== undefined) policy.dailyQuota = opts.dailyQuota;
  if (opts.signatureRequired !== undefined) policy.signatureRequired = opts.signatureRequired;
  if (opts.acceptTest !== undefined) policy.acceptTest = opts.acceptTest;
  return policy;
}

/** The system users: given on the command line, else those of the running embedded bus. */
function systemUsers(opts: AuthOptions): SystemUser[] {
  if (opts.systemNkey.length > 0) return opts.systemNkey.map((nkey) => ({ nkey }));
  const running = readRuntime(loadConfig().dataDir);
  const users = running?.credentialsDir
    ? readSystemUsers(path.dirname(running.credentialsDir))
    : undefined;
  if (!users) {
    throw new MagistralError(
      ErrorCode.BAD_REQUEST,
      "no running embedded bus with authorization: give --system-nkey for the broker and operator",
    );
  }
  return users;
}

async function render(ctx: AdminContext, opts: AuthOptions): Promise<string> {
  const { text } = await ctx.call<{ text: string }>("auth.render", { system: systemUsers(opts) });
  return text;
}

function reloadTarget(opts: AuthOptions) {
  const running = readRuntime(loadConfig().dataDir);
  const authFile = opts.authFile ?? running?.authFile;
  const pid = opts.pid ?? (opts.authFile ? undefined : running?.natsPid);
  if (!authFile) {
    throw new MagistralError(
      ErrorCode.BAD_REQUEST,
      "no running bus with authorization: give --auth-file",
    );
  }
  return { authFile, pid: () => pid };
}

function credentialsSummary(a: Agency): string {
  return keyValues([
    ["agency", a.id],
    ["nkeys", a.credentials?.nkeys?.join(", ")],
    ["password", a.credentials?.passwordHash ? "set (bcrypt)" : undefined],
    ["signing keys", a.signingKeys?.map((k) => `${k.keyId} (${k.algorithm})`).join(", ")],
    ["groups", a.groups?.join(", ")],
  ]);
}

function policyText(p: ServicePolicy): string {
  return keyValues([
    ["consumers", p.consumers.length ? p.consumers.join(", ") : "any"],
    ["groups", p.consumerGroups.join(", ") || undefined],
    ["rate", p.ratePerSecond ? `${p.ratePerSecond}/s, burst ${p.burst || "1s worth"}` : "none"],
    ["daily quota", p.dailyQuota || "none"],
    ["signature", p.signatureRequired ? "required" : "optional"],
    ["test traffic", p.acceptTest ? "accepted" : "refused"],
  ]);
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function number(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError("a number, 0 or more");
  return n;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
}
