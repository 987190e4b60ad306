import test, { type ExecutionContext } from "ava";
import {
  decodeEnvelope,
  decodeValue,
  type Envelope,
  encodeEnvelope,
  encodeValue,
  LIMITS,
  PROTOCOL_VERSION,
} from "../src/envelope.ts";
import { MagistralError } from "../src/errors.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const hex = (text: string) => new Uint8Array(Buffer.from(text.replace(/\s+/g, ""), "hex"));

function fullEnvelope(): Envelope {
  return {
    v: PROTOCOL_VERSION,
    id: "0b7f3c7e-5a4e-4d59-9d2c-3f1f2f0a9c11",
    kind: "response",
    service: "fns-egrul",
    sender: "fns",
    correlationId: "req_42",
    provider: "fns",
    createdAt: 1_767_225_600_123,
    ttlMs: 60_000,
    headers: { "x-trace": "abc", "Content-Language": "ru" },
    contentType: "application/xml",
    payload: bytes("<a>ЕГРЮЛ</a>"),
    signature: new Uint8Array([1, 2, 3, 0, 255]),
    keyId: "key-2026",
    test: true,
    attempt: 3,
    error: { code: "PROVIDER_FAULT", message: "boom", retryable: true },
  };
}

/** Byte arrays as plain Uint8Array, so a Buffer and a Uint8Array compare equal. */
function normalized(env: Envelope) {
  return {
    ...env,
    payload: new Uint8Array(env.payload),
    ...(env.signature ? { signature: new Uint8Array(env.signature) } : {}),
  };
}

function minimal(fields: Record<string, unknown> = {}) {
  return {
    v: 1,
    id: "m1",
    kind: "request",
    createdAt: 1_767_225_600_000,
    payload: new Uint8Array([1]),
    ...fields,
  };
}

function assertBadEnvelope(t: ExecutionContext, input: Uint8Array, label: string) {
  const err = t.throws(() => decodeEnvelope(input), { instanceOf: MagistralError }, label);
  t.is(err?.code, "BAD_ENVELOPE", label);
}

test("an envelope with every field survives encode and decode", (t) => {
  const env = fullEnvelope();
  t.deepEqual(normalized(decodeEnvelope(encodeEnvelope(env))), normalized(env));
});

test("the wire form is a plain map with bin payload and an int64 creation time", (t) => {
  const wire = Buffer.from(encodeEnvelope(fullEnvelope()));
  // msgpackr writes every map with a 16-bit size: map 16, standard MessagePack.
  t.is(wire[0], 0xde, "map 16");
  const after = (key: string) => wire[wire.indexOf(Buffer.from(key)) + key.length];
  t.is(after("createdAt"), 0xd3, "int64, not float64");
  t.is(after("payload"), 0xc4, "bin 8");
  t.is(after("signature"), 0xc4, "bin 8");
});

test("a request encoded by hand as another language would is accepted", (t) => {
  // uint64 createdAt, as Python's msgpack and most Go encoders write it.
  const wire = hex(`87 a1 76 01 a2 69 64 a8 72 65 71 2d 30 30 30 31
    a4 6b 69 6e 64 a7 72 65 71 75 65 73 74 a7 73 65 72 76 69 63 65 a4 65 63 68 6f
    a9 63 72 65 61 74 65 64 41 74 cf 00 00 01 9b 76 da a8 00
    ab 63 6f 6e 74 65 6e 74 54 79 70 65 aa 74 65 78 74 2f 70 6c 61 69 6e
    a7 70 61 79 6c 6f 61 64 c4 02 68 69`);
  const env = decodeEnvelope(wire);
  t.like(env, {
    v: 1,
    id: "req-0001",
    kind: "request",
    service: "echo",
    createdAt: 1_767_225_600_000,
    contentType: "text/plain",
  });
  t.deepEqual(new Uint8Array(env.payload), bytes("hi"));
});

test("unknown fields are dropped", (t) => {
  const env = decodeEnvelope(encodeValue(minimal({ future: 1, nested: { x: [1, 2] } })));
  t.false("future" in env);
  t.false("nested" in env);
  t.deepEqual(Object.keys(env).sort(), ["createdAt", "id", "kind", "payload", "v"]);
});

test("bytes that are not MessagePack are BAD_ENVELOPE", (t) => {
  assertBadEnvelope(t, new Uint8Array(0), "empty");
  assertBadEnvelope(t, bytes("hello, bus"), "text");
  assertBadEnvelope(t, hex("c1"), "reserved byte");
  assertBadEnvelope(t, hex("d4 05 01"), "unknown extension");
  assertBadEnvelope(t, hex("01 02"), "trailing bytes");
  const deep = new Uint8Array(100_000).fill(0x91);
  assertBadEnvelope(t, deep, "100k nested arrays");
});

test("truncated MessagePack is BAD_ENVELOPE at every cut", (t) => {
  const wire = encodeEnvelope(fullEnvelope());
  for (let cut = 0; cut < wire.length; cut++) {
    assertBadEnvelope(t, wire.subarray(0, cut), `cut at ${cut}`);
  }
});

test("values that are not maps are BAD_ENVELOPE", (t) => {
  for (const value of [null, 1, "envelope", [minimal()], bytes("x"), true]) {
    assertBadEnvelope(t, encodeValue(value), JSON.stringify(value));
  }
});

test("fields of the wrong type are BAD_ENVELOPE", (t) => {
  const cases: Record<string, unknown>[] = [
    { id: 5 },
    { id: undefined },
    { kind: "reply" },
    { kind: 1 },
    { createdAt: "now" },
    { createdAt: -1 },
    { createdAt: 1.5 },
    { createdAt: 2 ** 60 },
    { payload: "text instead of bin" },
    { payload: [1, 2] },
    { payload: undefined },
    { headers: ["a"] },
    { headers: { a: 1 } },
    { headers: "a=b" },
    { test: 1 },
    { ttlMs: 0 },
    { ttlMs: LIMITS.maxTtlMs + 1 },
    { ttlMs: "1000" },
    { attempt: 0 },
    { signature: "sig" },
    { contentType: 7 },
    { keyId: ["k"] },
    { error: { code: "NOPE", message: "x" } },
    { error: { code: "INTERNAL" } },
    { error: "INTERNAL" },
  ];
  for (const fields of cases) {
    assertBadEnvelope(t, encodeValue(minimal(fields)), JSON.stringify(fields));
  }
});

test("ids that are not subject tokens are BAD_ENVELOPE", (t) => {
  const badTokens = ["", "Echo", "a.b", "*", ">", "a b", "ünï", "x".repeat(65), "a\0b"];
  for (const value of badTokens) {
    for (const key of ["service", "sender", "provider"]) {
      assertBadEnvelope(t, encodeValue(minimal({ [key]: value })), `${key}=${value}`);
    }
  }
  const badIds = ["", "a.b", "a b", "a/b", "*", "x".repeat(129), "a\0"];
  for (const value of badIds) {
    for (const key of ["id", "correlationId"]) {
      assertBadEnvelope(t, encodeValue(minimal({ [key]: value })), `${key}=${value}`);
    }
  }
});

test("NUL in any string is BAD_ENVELOPE", (t) => {
  const cases = [
    { contentType: "text/plain\0" },
    { keyId: "k\0" },
    { headers: { a: "x\0y" } },
    { headers: { "a\0": "x" } },
  ];
  for (const fields of cases) {
    assertBadEnvelope(t, encodeValue(minimal(fields)), JSON.stringify(fields));
  }
});

test("a protocol version other than 1 is BAD_ENVELOPE", (t) => {
  for (const v of [0, 2, 255, 256, "1", 1.5, null]) {
    assertBadEnvelope(t, encodeValue(minimal({ v })), `v=${v}`);
  }
});

test("oversized strings and header maps are BAD_ENVELOPE, quickly", (t) => {
  const started = performance.now();
  assertBadEnvelope(t, withHugeHeaders(100_000), "100k headers");
  t.true(performance.now() - started < 2_000);

  const justOver = Object.fromEntries(
    Array.from({ length: LIMITS.maxHeaders + 1 }, (_, i) => [`h${i}`, "v"]),
  );
  assertBadEnvelope(t, encodeValue(minimal({ headers: justOver })), "65 headers");
  const longValue = { a: "x".repeat(LIMITS.maxHeaderBytes + 1) };
  assertBadEnvelope(t, encodeValue(minimal({ headers: longValue })), "long header value");
  const longName = { ["n".repeat(LIMITS.maxStringBytes + 1)]: "v" };
  assertBadEnvelope(t, encodeValue(minimal({ headers: longName })), "long header name");
  const wide = { ["я".repeat(200)]: "v" };
  assertBadEnvelope(t, encodeValue(minimal({ headers: wide })), "header name over 256 bytes");
  assertBadEnvelope(t, encodeValue(minimal({ contentType: "x".repeat(257) })), "content type");
});

test("limits themselves are accepted", (t) => {
  const headers = Object.fromEntries(
    Array.from({ length: LIMITS.maxHeaders }, (_, i) => [
      `h${i}`,
      "v".repeat(LIMITS.maxHeaderBytes),
    ]),
  );
  const env = decodeEnvelope(
    encodeValue(
      minimal({ headers, ttlMs: LIMITS.maxTtlMs, id: "i".repeat(128), service: "s".repeat(64) }),
    ),
  );
  t.is(Object.keys(env.headers!).length, LIMITS.maxHeaders);
});

/** A minimal envelope plus a `headers` map 32 of `count` entries, written by hand. */
function withHugeHeaders(count: number): Uint8Array {
  const base = Buffer.from(encodeValue(minimal()));
  addOneMapEntry(base);
  const parts: Buffer[] = [base, Buffer.from([0xa7]), Buffer.from("headers"), Buffer.alloc(5)];
  parts[3]![0] = 0xdf;
  parts[3]!.writeUInt32BE(count, 1);
  for (let i = 0; i < count; i++) {
    const name = Buffer.from(`h${i}`);
    parts.push(Buffer.from([0xa0 | name.length]), name, Buffer.from([0xa1, 0x76]));
  }
  return new Uint8Array(Buffer.concat(parts));
}

/** Raises the entry count in the map header at the start of `wire` by one. */
function addOneMapEntry(wire: Buffer) {
  const first = wire[0]!;
  if (first >= 0x80 && first < 0x8f) wire[0] = first + 1;
  else if (first === 0xde) wire.writeUInt16BE(wire.readUInt16BE(1) + 1, 1);
  else throw new Error("expected a fixmap or map 16");
}

/** A small seeded generator, so a failing input can be replayed. */
function mulberry32(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function mutate(base: Uint8Array, random: () => number): Uint8Array {
  const int = (n: number) => Math.floor(random() * n);
  const out = Array.from(base);
  const edits = 1 + int(4);
  for (let i = 0; i < edits; i++) {
    const at = int(out.length + 1);
    switch (int(5)) {
      case 0:
        out[at] = int(256);
        break;
      case 1:
        out.splice(at, 0, int(256));
        break;
      case 2:
        out.splice(at, 1 + int(8));
        break;
      case 3:
        out.length = at;
        break;
      default:
        out[at] = [0x00, 0x7f, 0x80, 0xc0, 0xc4, 0xcf, 0xd3, 0xdc, 0xde, 0xff][int(10)]!;
    }
  }
  return new Uint8Array(out);
}

test("random and mutated inputs either decode or fail with BAD_ENVELOPE only", (t) => {
  const seed = Date.now() % 1_000_000;
  const random = mulberry32(seed);
  const bases = [encodeEnvelope(fullEnvelope()), encodeValue(minimal())];
  const started = performance.now();
  let decoded = 0;
  for (let i = 0; i < 5_000; i++) {
    const input =
      i % 5 === 0
        ? new Uint8Array(Array.from({ length: Math.floor(random() * 64) }, () => random() * 256))
        : mutate(bases[i % 2]!, random);
    try {
      const env = decodeEnvelope(input);
      decoded++;
      // Whatever is accepted must be a valid envelope that encodes again.
      t.deepEqual(normalized(decodeEnvelope(encodeEnvelope(env))), normalized(env));
    } catch (err) {
      if (!(err instanceof MagistralError) || err.code !== "BAD_ENVELOPE") {
        t.fail(`seed ${seed}, input ${Buffer.from(input).toString("hex")}: ${String(err)}`);
        return;
      }
    }
  }
  t.log(`${decoded} of 5000 inputs decoded, ${Math.round(performance.now() - started)} ms`);
  t.true(performance.now() - started < 10_000);
});

test("an absent field is left out of the map, never sent as an extension type", (t) => {
  const bytes = encodeValue({ ok: true, lastSuccessAt: undefined, list: [undefined] });
  t.false(Buffer.from(bytes).toString("hex").includes("d400"));
  t.deepEqual(decodeValue(bytes), { ok: true, list: [null] });
  const env = encodeEnvelope({ ...fullEnvelope(), test: undefined, ttlMs: undefined });
  t.false(Buffer.from(env).toString("hex").includes("d400"));
});
