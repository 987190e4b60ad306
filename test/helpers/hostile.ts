import { Packr } from "msgpackr";
import { encodeEnvelope, PROTOCOL_VERSION } from "../../src/envelope.ts";

/** A seeded generator, so that a failing input can be made again from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Any MessagePack, including what the bus's own encoder would never write.
const loose = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: true });

export const XXE = `<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r xmlns="urn:fuzz">&x;</r>`;

export const BILLION_LAUGHS = `<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY l1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY l2 "&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;">
<!ENTITY l3 "&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;">
<!ENTITY l4 "&l3;&l3;&l3;&l3;&l3;&l3;&l3;&l3;&l3;&l3;">
<!ENTITY l5 "&l4;&l4;&l4;&l4;&l4;&l4;&l4;&l4;&l4;&l4;">
<!ENTITY l6 "&l5;&l5;&l5;&l5;&l5;&l5;&l5;&l5;&l5;&l5;">
<!ENTITY l7 "&l6;&l6;&l6;&l6;&l6;&l6;&l6;&l6;&l6;&l6;">
<!ENTITY l8 "&l7;&l7;&l7;&l7;&l7;&l7;&l7;&l7;&l7;&l7;">
<!ENTITY l9 "&l8;&l8;&l8;&l8;&l8;&l8;&l8;&l8;&l8;&l8;">]>
<Query xmlns="urn:fuzz">&l9;</Query>`;

const BAD_TOKENS = [
  "",
  "a.b",
  "*",
  ">",
  "a b",
  "UPPER",
  "ü",
  "a\0b",
  "x".repeat(65),
  "../etc",
  "$JS",
  "_INBOX.mfc",
];

const WRONG_VALUES: unknown[] = [
  null,
  true,
  -1,
  1.5,
  Number.NaN,
  2 ** 60,
  "x".repeat(300),
  "",
  [],
  [1, 2, 3],
  {},
  { a: 1 },
  new Uint8Array(3),
  ...BAD_TOKENS,
];

const FIELDS = [
  "v",
  "id",
  "kind",
  "service",
  "sender",
  "correlationId",
  "createdAt",
  "ttlMs",
  "headers",
  "contentType",
  "payload",
  "signature",
  "keyId",
  "test",
  "attempt",
  "error",
];

/** A valid request envelope's fields, for mutation. */
export function validRequest(service: string, payload: string): Record<string, unknown> {
  return {
    v: PROTOCOL_VERSION,
    id: crypto.randomUUID(),
    kind: "request",
    service,
    createdAt: Date.now(),
    payload: new TextEncoder().encode(payload),
  };
}

/**
 * Hostile inputs of every family, `count` in all, cycling through the
 * families so each is well represented: random bytes, truncated envelopes,
 * wrong types, unknown and enormous fields, deep nesting, invalid UTF-8,
 * bad ids, NUL bytes, hostile XML.
 */
export function hostileInputs(random: () => number, count: number, service: string) {
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(list: readonly T[]) => list[int(list.length)]!;
  const families: (() => Uint8Array)[] = [
    () => randomBytes(random, int(512)),
    () => {
      const whole = encodeEnvelope(validRequest(service, "x") as never);
      return whole.subarray(0, int(whole.length));
    },
    () => loose.pack({ ...validRequest(service, "x"), [pick(FIELDS)]: pick(WRONG_VALUES) }),
    () => {
      const env = validRequest(service, "x");
      for (let i = 0; i < 1 + int(40); i++) env[`unknown${i}`] = pick(WRONG_VALUES);
      return loose.pack(env);
    },
    () => loose.pack({ ...validRequest(service, "x"), id: pick(BAD_TOKENS) || "a.b" }),
    () => loose.pack({ ...validRequest(service, "x"), service: pick(BAD_TOKENS) }),
    () => loose.pack({ ...validRequest(service, "x"), headers: { "a\0": "b", c: "d\0" } }),
    () => invalidUtf8Envelope(service),
    () => encodeEnvelope(validRequest(pick([service, undefined]) as string, XXE) as never),
    () => encodeEnvelope(validRequest(service, BILLION_LAUGHS) as never),
    () => loose.pack(pick(WRONG_VALUES)),
    () => {
      const whole = encodeEnvelope(validRequest(service, "x") as never);
      const copy = new Uint8Array(whole);
      for (let i = 0; i < 1 + int(4); i++) copy[int(copy.length)] = int(256);
      return copy;
    },
  ];
  // Costly to make and to refuse (milliseconds each), so one input in ten.
  const heavy: (() => Uint8Array)[] = [
    () => deepNesting(1_000 + int(50_000)),
    () => pick(enormousMaps()),
    () => loose.pack({ ...validRequest(service, "x"), contentType: "x".repeat(200_000) }),
  ];
  return Array.from({ length: count }, (_, i) =>
    i % 10 === 9 ? pick(heavy)() : families[i % families.length]!(),
  );
}

function randomBytes(random: () => number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = Math.floor(random() * 256);
  return bytes;
}

/** `[[[[...]]]]` nested `depth` deep, as raw MessagePack. */
function deepNesting(depth: number): Uint8Array {
  const bytes = new Uint8Array(depth + 1).fill(0x91);
  bytes[depth] = 0xc0;
  return bytes;
}

let maps: Uint8Array[] | undefined;

/** Maps of 10 to 50 thousand entries, made once. */
function enormousMaps(): Uint8Array[] {
  maps ??= [10_000, 50_000].map((entries) => {
    const map: Record<string, number> = {};
    for (let i = 0; i < entries; i++) map[`k${i}`] = i;
    return loose.pack(map);
  });
  return maps;
}

/** A request whose `service` string holds bytes that are not UTF-8. */
function invalidUtf8Envelope(service: string): Uint8Array {
  const marker = "SERVICE-MARK";
  const bytes = loose.pack({ ...validRequest(service, "x"), service: marker });
  const at = Buffer.from(bytes).indexOf(marker);
  bytes.set([0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x28, 0x8c], at);
  return bytes;
}
