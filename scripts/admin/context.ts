import path from "node:path";
import { errors } from "@nats-io/transport-node";
import type { Command } from "commander";
import { AdminClient } from "../../src/admin-client.ts";
import { loadConfig } from "../../src/config.ts";
import { type Login, nkeyFileLogin, readOperatorLogin } from "../../src/credentials.ts";
import { readRuntime } from "../../src/embedded.ts";
import { ErrorCode, MagistralError, toMagistralError } from "../../src/errors.ts";
import { printJson } from "./output.ts";

/** The options every command takes, set on the program. */
export interface GlobalOptions {
  server?: string;
  json?: boolean;
  user?: string;
  password?: string;
  waitMs: number;
}

/**
 * What a command module gets besides the program: the bus (connected on
 * first use) and the way to print a result.
 */
export interface AdminContext {
  options(): GlobalOptions;
  /** The NATS URL(s) the script talks to. */
  server(): string;
  /** Connection options for a command that needs its own NATS connection. */
  natsOptions(): { servers: string[]; user?: string; pass?: string } & Login;
  /**
   * Calls one admin operation of the bus.
   * @throws MagistralError with the bus's code, or UNAVAILABLE when the bus cannot be reached
   */
  call<T = unknown>(op: string, body?: Record<string, unknown>): Promise<T>;
  /** Prints `value` as JSON under `--json`, else the text `human` renders. */
  print<T>(value: T, human: (value: T) => string): void;
  close(): Promise<void>;
}

export const DEFAULT_SERVER = "nats://127.0.0.1:4222";
const CONNECT_ATTEMPTS = 3;

/**
 * Where to find the bus when `--server` is not given: the runtime file of an
 * embedded bus under the data dir, then MAGISTRAL_NATS, then the default port.
 */
export function defaultServer(env: NodeJS.ProcessEnv = process.env): string {
  const config = loadConfig(env);
  const running = readRuntime(config.dataDir);
  if (running) return running.servers.join(",");
  if (config.servers.length > 0) return config.servers.join(",");
  return DEFAULT_SERVER;
}

/**
 * The operator login an embedded bus with authorization keeps under its
 * data dir; used only when talking to that bus, found by its runtime file.
 */
function embeddedOperatorLogin(env: NodeJS.ProcessEnv = process.env) {
  const running = readRuntime(loadConfig(env).dataDir);
  return running?.credentialsDir
    ? readOperatorLogin(path.dirname(running.credentialsDir))
    : undefined;
}

export function createContext(program: Command): AdminContext {
  let client: Promise<AdminClient> | undefined;
  const options = () => program.opts<GlobalOptions>();
  const server = () => options().server ?? defaultServer();

  // Credentials are read here, not as option defaults, so help never prints a password.
  const natsOptions = () => {
    const user = options().user ?? process.env.MAGISTRAL_NATS_USER;
    const seedFile = process.env.MAGISTRAL_NATS_NKEY;
    // The operator login an embedded bus on this machine wrote is used unless
    // another login is given, also with --server naming that bus.
    const login = seedFile ? nkeyFileLogin(seedFile) : user ? undefined : embeddedOperatorLogin();
    return {
      servers: server().split(","),
      user,
      pass: options().password ?? process.env.MAGISTRAL_NATS_PASS,
      ...login,
    };
  };

  // A server reloading its authorization (after a registry change) can turn
  // a login away for a moment: try a few times before giving up.
  const connect = async (): Promise<AdminClient> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await AdminClient.connect({ ...natsOptions(), maxReconnectAttempts: 0 });
      } catch (err) {
        if (attempt < CONNECT_ATTEMPTS) {
          await new Promise((r) => setTimeout(r, 300 * attempt));
          continue;
        }
        const message = `cannot connect to ${server()}: ${(err as Error).message}`;
        throw new MagistralError(ErrorCode.UNAVAILABLE, message, { cause: err });
      }
    }
  };

  return {
    options,
    server,
    natsOptions,
    async call<T>(op: string, body: Record<string, unknown> = {}) {
      client ??= connect();
      const admin = await client;
      try {
        return await admin.call<T>(op, body, options().waitMs);
      } catch (err) {
        throw busError(err, server());
      }
    },
    print(value, human) {
      if (options().json) printJson(value);
      else process.stdout.write(`${human(value)}\n`);
    },
    async close() {
      const admin = await client?.catch(() => undefined);
      await admin?.close();
    },
  };
}

/** Maps transport failures of a request to the bus's codes. */
function busError(err: unknown, server: string): MagistralError {
  if (err instanceof MagistralError) return err;
  if (err instanceof errors.RequestError && err.isNoResponders()) {
    return new MagistralError(ErrorCode.UNAVAILABLE, `no broker node answers at ${server}`, {
      cause: err,
    });
  }
  if (err instanceof errors.TimeoutError || err instanceof errors.RequestError) {
    return new MagistralError(ErrorCode.UNAVAILABLE, `no answer from the bus at ${server}`, {
      cause: err,
    });
  }
  return toMagistralError(err);
}
