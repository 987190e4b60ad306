import { Ajv, type ValidateFunction } from "ajv";
import {
  XmlDocument,
  XmlError,
  type XmlInputProvider,
  XsdValidator,
  xmlRegisterInputProvider,
} from "libxml2-wasm";
import { ErrorCode, MagistralError } from "./errors.ts";
import type { SchemaBundle } from "./registry.ts";

/** Qualified name of an XML document's root element. */
export interface XmlRoot {
  namespace: string;
  rootElement: string;
}

export interface PayloadValidator {
  /** @throws MagistralError SCHEMA_INVALID */
  validate(payload: Uint8Array): void;
  dispose(): void;
}

const SCHEME = "mg-schema://";

/**
 * XSD files are read by libxml2 through this in-memory provider: a bundle's
 * relative imports resolve to `mg-schema://<key>/<path>` and never touch
 * the file system or the network.
 */
class SchemaFiles implements XmlInputProvider {
  private readonly files = new Map<string, Uint8Array>();
  private readonly open_ = new Map<number, { bytes: Uint8Array; offset: number }>();
  private nextFd = 1;

  add(url: string, bytes: Uint8Array) {
    this.files.set(url, bytes);
  }

  removePrefix(prefix: string) {
    for (const url of this.files.keys()) if (url.startsWith(prefix)) this.files.delete(url);
  }

  match = (filename: string) => filename.startsWith(SCHEME);

  open = (filename: string) => {
    const bytes = this.files.get(filename);
    if (!bytes) return undefined;
    const fd = this.nextFd++;
    this.open_.set(fd, { bytes, offset: 0 });
    return fd;
  };

  read = (fd: number, buf: Uint8Array) => {
    const file = this.open_.get(fd);
    if (!file) return -1;
    const n = Math.min(buf.byteLength, file.bytes.length - file.offset);
    buf.set(file.bytes.subarray(file.offset, file.offset + n));
    file.offset += n;
    return n;
  };

  close = (fd: number) => this.open_.delete(fd);
}

let schemaFiles: SchemaFiles | undefined;
function files(): SchemaFiles {
  if (!schemaFiles) {
    schemaFiles = new SchemaFiles();
    xmlRegisterInputProvider(schemaFiles as unknown as XmlInputProvider);
  }
  return schemaFiles;
}

// addUsedSchema off: a schema with an $id must compile again (registration
// check, then each node's validator) without clashing with its earlier copy.
const ajv = new Ajv({ allErrors: false, strict: false, addUsedSchema: false });
const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Compiles a stored bundle. `key` must be unique per bundle revision. For an
 * XSD, `root` is the one root element a request may have: an XSD declares
 * other global elements (the response among them) that would validate too.
 */
export function compileSchema(key: string, bundle: SchemaBundle, root?: XmlRoot): PayloadValidator {
  return bundle.kind === "xsd" ? compileXsd(key, bundle, root) : compileJson(bundle.schema);
}

function compileXsd(
  key: string,
  bundle: Extract<SchemaBundle, { kind: "xsd" }>,
  root: XmlRoot | undefined,
): PayloadValidator {
  const prefix = `${SCHEME}${key}/`;
  const store = files();
  for (const [rel, text] of Object.entries(bundle.files)) {
    store.add(prefix + rel, Buffer.from(text, "utf8"));
  }
  const mainUrl = prefix + bundle.main;
  let validator: XsdValidator;
  const xsdDoc = XmlDocument.fromBuffer(Buffer.from(bundle.files[bundle.main] ?? "", "utf8"), {
    url: mainUrl,
  });
  try {
    validator = XsdValidator.fromDoc(xsdDoc);
  } catch (err) {
    xsdDoc.dispose();
    store.removePrefix(prefix);
    throw new MagistralError(ErrorCode.BAD_REQUEST, `XSD does not compile: ${message(err)}`, {
      cause: err,
    });
  }
  return {
    validate(payload) {
      const doc = parseXml(payload);
      try {
        if (root) checkRoot(doc, root);
        validator.validate(doc);
      } catch (err) {
        throw new MagistralError(ErrorCode.SCHEMA_INVALID, message(err), { cause: err });
      } finally {
        doc.dispose();
      }
    },
    dispose() {
      validator.dispose();
      xsdDoc.dispose();
      store.removePrefix(prefix);
    },
  };
}

function compileJson(schema: Record<string, unknown>): PayloadValidator {
  let check: ValidateFunction;
  try {
    check = ajv.compile(schema);
  } catch (err) {
    throw new MagistralError(
      ErrorCode.BAD_REQUEST,
      `JSON Schema does not compile: ${message(err)}`,
    );
  }
  return {
    validate(payload) {
      let value: unknown;
      try {
        value = JSON.parse(utf8.decode(payload));
      } catch (err) {
        throw new MagistralError(ErrorCode.SCHEMA_INVALID, "payload is not JSON", { cause: err });
      }
      if (!check(value)) {
        const first = check.errors?.[0];
        const where = first?.instancePath || "/";
        throw new MagistralError(
          ErrorCode.SCHEMA_INVALID,
          `${where} ${first?.message ?? "invalid"}`,
        );
      }
    },
    dispose() {},
  };
}

/**
 * Parses XML with libxml2's defaults: entities are not substituted, external
 * DTDs and entities are not loaded, and entity amplification is capped, so
 * XXE and "billion laughs" payloads fail or stay inert.
 */
function parseXml(payload: Uint8Array): XmlDocument {
  try {
    return XmlDocument.fromBuffer(payload);
  } catch (err) {
    throw new MagistralError(ErrorCode.SCHEMA_INVALID, `not well-formed XML: ${message(err)}`, {
      cause: err,
    });
  }
}

function checkRoot(doc: XmlDocument, root: XmlRoot): void {
  const namespace = doc.root.namespaceUri ?? "";
  const name = localName(doc.root.name);
  if (namespace !== root.namespace || name !== root.rootElement) {
    throw new MagistralError(
      ErrorCode.SCHEMA_INVALID,
      `root element {${namespace}}${name} is not {${root.namespace}}${root.rootElement}`,
    );
  }
}

/** The root element of an XML payload, or undefined when it is not XML. */
export function xmlRoot(payload: Uint8Array): XmlRoot | undefined {
  let doc: XmlDocument;
  try {
    doc = XmlDocument.fromBuffer(payload);
  } catch {
    return undefined;
  }
  try {
    return { namespace: doc.root.namespaceUri ?? "", rootElement: localName(doc.root.name) };
  } finally {
    doc.dispose();
  }
}

/** The targetNamespace declared by an XSD document's text. */
export function xsdTargetNamespace(xsdText: string): string | undefined {
  const doc = XmlDocument.fromString(xsdText);
  try {
    return doc.root.get("@targetNamespace")?.content || undefined;
  } finally {
    doc.dispose();
  }
}

function localName(name: string): string {
  const colon = name.indexOf(":");
  return colon < 0 ? name : name.slice(colon + 1);
}

function message(err: unknown): string {
  const text = err instanceof XmlError || err instanceof Error ? err.message : String(err);
  return text.trim().slice(0, 1000);
}
