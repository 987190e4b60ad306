import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from "node:crypto";
import type { Envelope } from "./envelope.ts";
import { ErrorCode, MagistralError } from "./errors.ts";
import type { Agency, SigningKey } from "./registry.ts";

/**
 * Verifies request signatures of one algorithm. The bus ships Ed25519;
 * another algorithm (GOST R 34.10-2012, say) is added by registering an
 * implementation under the name its agencies' keys carry.
 */
export interface SignatureVerifier {
  /** The `algorithm` of the signing keys this verifier handles. */
  readonly algorithm: string;
  /** @throws MagistralError BAD_REQUEST when `publicKey` is not a key of this algorithm. */
  checkKey(publicKey: string): void;
  /** Whether `signature` over `data` verifies with `publicKey`; false for a malformed key. */
  verify(publicKey: string, data: Uint8Array, signature: Uint8Array): boolean;
}

/** Produces a request's signature on the consumer's side. */
export interface RequestSigner {
  /** Carried in the envelope's `keyId`, so the bus picks the right public key. */
  readonly keyId: string;
  sign(data: Uint8Array): Uint8Array;
}

/** Separates request signatures from any other use of the same key. */
const SIGNING_DOMAIN = "magistral-request-v1";
const ED25519_RAW_BYTES = 32;
const ED25519_SIGNATURE_BYTES = 64;
/** DER prefixes that wrap 32 raw Ed25519 bytes as SPKI (public) and PKCS#8 (private). */
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");
const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const KEY_CACHE_LIMIT = 1_024;

/**
 * The bytes a consumer signs: `magistral-request-v1`, the message id, the
 * service the envelope names ("" when it is routed by XML root), and the
 * SHA-256 of the payload in lowercase hex, joined by line feeds.
 */
export function signedBytes(id: string, service: string | undefined, payload: Uint8Array) {
  const digest = createHash("sha256").update(payload).digest("hex");
  return Buffer.from([SIGNING_DOMAIN, id, service ?? "", digest].join("\n"), "utf8");
}

/** Ed25519 by node:crypto. Public keys are the 32 raw bytes in base64, or SPKI PEM. */
export class Ed25519Verifier implements SignatureVerifier {
  readonly algorithm = "ed25519";
  private readonly keys = new Map<string, KeyObject>();

  checkKey(publicKey: string): void {
    try {
      this.key(publicKey);
    } catch (err) {
      throw new MagistralError(ErrorCode.BAD_REQUEST, "not an Ed25519 public key", { cause: err });
    }
  }

  verify(publicKey: string, data: Uint8Array, signature: Uint8Array): boolean {
    if (signature.length !== ED25519_SIGNATURE_BYTES) return false;
    try {
      return verify(null, data, this.key(publicKey), signature);
    } catch {
      return false;
    }
  }

  private key(publicKey: string): KeyObject {
    const cached = this.keys.get(publicKey);
    if (cached) return cached;
    const key = parseEd25519PublicKey(publicKey);
    if (this.keys.size >= KEY_CACHE_LIMIT) this.keys.clear();
    this.keys.set(publicKey, key);
    return key;
  }
}

function parseEd25519PublicKey(text: string): KeyObject {
  if (text.startsWith("-----BEGIN")) {
    const key = createPublicKey(text);
    if (key.asymmetricKeyType !== "ed25519") throw new Error("not an Ed25519 key");
    return key;
  }
  const raw = Buffer.from(text, "base64");
  if (raw.length !== ED25519_RAW_BYTES) throw new Error("an Ed25519 key has 32 bytes");
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: "der", type: "spki" });
}

/**
 * The verifiers a broker node knows, by algorithm.
 * LIMITATION: only Ed25519 is built in. GOST R 34.10-2012, which SMEV
 * requires, is not in Node's OpenSSL; an operator who needs it registers a
 * SignatureVerifier backed by a certified provider.
 */
export class SignatureVerifiers {
  private readonly byAlgorithm = new Map<string, SignatureVerifier>();

  constructor(verifiers: SignatureVerifier[] = [new Ed25519Verifier()]) {
    for (const v of verifiers) this.register(v);
  }

  register(verifier: SignatureVerifier): void {
    this.byAlgorithm.set(verifier.algorithm, verifier);
  }

  /** @throws MagistralError BAD_REQUEST for an unknown algorithm or a malformed key. */
  checkKey(key: SigningKey): void {
    const verifier = this.byAlgorithm.get(key.algorithm);
    if (!verifier) {
      throw new MagistralError(ErrorCode.BAD_REQUEST, `no verifier for ${key.algorithm}`);
    }
    verifier.checkKey(key.publicKey);
  }

  /**
   * Checks a request's signature against the sender's registered keys.
   * @throws MagistralError SIGNATURE_REQUIRED when unsigned and `required`,
   *   SIGNATURE_INVALID when the key id is unknown or the signature is wrong
   */
  checkRequest(sender: Agency, env: Envelope, required: boolean): void {
    if (!env.signature) {
      if (!required) return;
      throw new MagistralError(ErrorCode.SIGNATURE_REQUIRED, "the service takes signed requests");
    }
    const key = sender.signingKeys?.find((k) => k.keyId === env.keyId);
    if (!key) {
      throw new MagistralError(ErrorCode.SIGNATURE_INVALID, "keyId names no key of the sender");
    }
    const verifier = this.byAlgorithm.get(key.algorithm);
    const data = signedBytes(env.id, env.service, env.payload);
    if (!verifier?.verify(key.publicKey, data, env.signature)) {
      throw new MagistralError(ErrorCode.SIGNATURE_INVALID, "signature does not verify");
    }
  }
}

/**
 * The verifiers of this process, used by the submit path and by agency
 * registration alike; register another algorithm here at start-up.
 */
export const defaultVerifiers = new SignatureVerifiers();

/**
 * An Ed25519 signer from a private key: a KeyObject, PKCS#8 PEM text, or
 * the 32-byte seed.
 */
export function ed25519Signer(keyId: string, privateKey: KeyObject | string | Uint8Array) {
  const key =
    typeof privateKey === "string"
      ? createPrivateKey(privateKey)
      : privateKey instanceof Uint8Array
        ? createPrivateKey({
            key: Buffer.concat([PKCS8_PREFIX, Buffer.from(privateKey)]),
            format: "der",
            type: "pkcs8",
          })
        : privateKey;
  if (key.asymmetricKeyType !== "ed25519") throw new Error("not an Ed25519 private key");
  const signer: RequestSigner = {
    keyId,
    sign: (data) => new Uint8Array(sign(null, data, key)),
  };
  return signer;
}

/** Signs a request envelope in place with `signer`. */
export function signEnvelope(env: Envelope, signer: RequestSigner): Envelope {
  env.keyId = signer.keyId;
  env.signature = signer.sign(signedBytes(env.id, env.service, env.payload));
  return env;
}

/** A new Ed25519 key pair: the public key as registered, the private key as PKCS#8 PEM. */
export function generateSigningKey(keyId: string): {
  key: SigningKey;
  privateKeyPem: string;
} {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const spki = publicKey.export({ format: "der", type: "spki" });
  return {
    key: {
      keyId,
      algorithm: "ed25519",
      publicKey: spki.subarray(SPKI_PREFIX.length).toString("base64"),
    },
    privateKeyPem: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
  };
}
