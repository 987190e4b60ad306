import { JetStreamApiError, jetstreamManager } from "@nats-io/jetstream";
import {
  connect,
  type NatsConnection,
  NoRespondersError,
  TimeoutError,
} from "@nats-io/transport-node";
import test, { type ExecutionContext } from "ava";
import { callError } from "../src/delivery.ts";
import { ErrorCode } from "../src/errors.ts";
import {
  NoStreamError,
  Requester,
  RequesterClosedError,
  RequestTimeoutError,
} from "../src/requester.ts";
import { natsServer } from "./helpers/nats.ts";

const text = new TextEncoder();
const read = new TextDecoder();

/** How late past its timeout a request may fail: the sweep period and a loaded machine. */
const TIMEOUT_SLACK_MS = 400;
/** A no-responders status comes straight back from the server. */
const PROMPT_MS = 500;

async function connected(t: ExecutionContext): Promise<{ nc: NatsConnection; req: Requester }> {
  const server = await natsServer(t);
  const nc = await connect({ servers: server.url, noAsyncTraces: true });
  t.teardown(() => nc.close());
  const req = new Requester(nc);
  t.teardown(() => req.close());
  return { nc, req };
}

/** Answers `echo` with `echo:<payload>` after a random delay, so replies come out of order. */
function echoResponder(nc: NatsConnection): void {
  nc.subscribe("echo", {
    callback: (_err, m) => {
      const body = `echo:${read.decode(m.data)}`;
      setTimeout(() => m.respond(text.encode(body)), Math.random() * 20);
    },
  });
}

async function elapsedRejection(p: Promise<unknown>): Promise<{ err: unknown; ms: number }> {
  const started = performance.now();
  try {
    await p;
  } catch (err) {
    return { err, ms: performance.now() - started };
  }
  throw new Error("expected a rejection");
}

test("each of 200 concurrent requests gets its own reply", async (t) => {
  const { nc, req } = await connected(t);
  echoResponder(nc);
  await nc.flush();
  const payloads = Array.from({ length: 200 }, (_, i) => `request-${i}`);
  const replies = await Promise.all(
    payloads.map((p) => req.request("echo", text.encode(p), { timeoutMs: 5_000 })),
  );
  t.deepEqual(
    replies.map((m) => read.decode(m.data)),
    payloads.map((p) => `echo:${p}`),
  );
  t.is(req.inFlight, 0);
});

test("a request no one answers times out in about its timeout", async (t) => {
  const { nc, req } = await connected(t);
  nc.subscribe("silent", { callback: () => {} });
  await nc.flush();
  const timeoutMs = 300;
  const { err, ms } = await elapsedRejection(
    req.request("silent", text.encode("x"), { timeoutMs }),
  );
  t.true(err instanceof RequestTimeoutError);
  t.true(err instanceof TimeoutError);
  t.regex((err as Error).message, /silent.*300 ms/);
  t.true(ms >= timeoutMs - 5, `${ms} ms`);
  t.true(ms < timeoutMs + TIMEOUT_SLACK_MS, `${ms} ms`);
  t.is(callError(err).code, ErrorCode.PROVIDER_TIMEOUT);
});

test("a request to a subject no one listens to fails at once with no responders", async (t) => {
  const { req } = await connected(t);
  const p = req.request("nobody.home", text.encode("x"), { timeoutMs: 10_000 });
  const { err, ms } = await elapsedRejection(p);
  t.true(err instanceof NoRespondersError, String(err));
  t.true(ms < PROMPT_MS, `${ms} ms`);
  t.is(callError(err).code, ErrorCode.NO_PROVIDER);
});

test("the errors map to the same codes as those of nats.js's own request", async (t) => {
  const { nc } = await connected(t);
  nc.subscribe("silent", { callback: () => {} });
  await nc.flush();
  const none = await elapsedRejection(nc.request("nobody.home", text.encode("x")));
  t.is(callError(none.err).code, ErrorCode.NO_PROVIDER);
  const late = await elapsedRejection(nc.request("silent", text.encode("x"), { timeout: 100 }));
  t.is(callError(late.err).code, ErrorCode.PROVIDER_TIMEOUT);
});

test("a durable publish returns its sequence, and a repeated id is a duplicate", async (t) => {
  const { nc, req } = await connected(t);
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "T", subjects: ["t.>"] });
  const first = await req.publishDurable("t.a", text.encode("1"), { msgID: "a" });
  t.deepEqual(first, { stream: "T", seq: 1, duplicate: false });
  const again = await req.publishDurable("t.a", text.encode("1"), { msgID: "a" });
  t.deepEqual(again, { stream: "T", seq: 1, duplicate: true });
  const next = await req.publishDurable("t.b", text.encode("2"), { msgID: "b" });
  t.deepEqual(next, { stream: "T", seq: 2, duplicate: false });
  const stored = await jsm.streams.getMessage("T", { seq: 1 });
  t.is(stored?.header?.get("Nats-Msg-Id"), "a");
});

test("a durable publish no stream takes, or the wrong stream takes, is rejected", async (t) => {
  const { nc, req } = await connected(t);
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "T", subjects: ["t.>"] });
  const none = await elapsedRejection(req.publishDurable("u.a", text.encode("1"), { msgID: "a" }));
  t.true(none.err instanceof NoStreamError, String(none.err));
  t.true(none.ms < PROMPT_MS, `${none.ms} ms`);
  const wrong = req.publishDurable("t.a", text.encode("1"), { msgID: "a", expectedStream: "U" });
  const refused = await elapsedRejection(wrong);
  t.true(refused.err instanceof JetStreamApiError, String(refused.err));
  t.is((await jsm.streams.info("T")).state.messages, 0);
});

test("closing rejects pending requests and refuses new ones", async (t) => {
  const { nc, req } = await connected(t);
  nc.subscribe("silent", { callback: () => {} });
  await nc.flush();
  const pending = req.request("silent", text.encode("x"), { timeoutMs: 10_000 });
  req.close();
  const { err, ms } = await elapsedRejection(pending);
  t.true(err instanceof RequesterClosedError);
  t.true(ms < PROMPT_MS, `${ms} ms`);
  await t.throwsAsync(req.request("silent", text.encode("x"), { timeoutMs: 100 }), {
    instanceOf: RequesterClosedError,
  });
});

test("a closed connection rejects pending requests", async (t) => {
  const { nc, req } = await connected(t);
  nc.subscribe("silent", { callback: () => {} });
  await nc.flush();
  const pending = req.request("silent", text.encode("x"), { timeoutMs: 10_000 });
  await nc.close();
  await t.throwsAsync(pending, { instanceOf: RequesterClosedError, message: /connection closed/ });
});
