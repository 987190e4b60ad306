import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** One SMEV "вид сведений" from the samples folder, ready to register and submit. */
export interface SmevSample {
  /** The type as named in index.json. */
  type: string;
  /** The type as a service id: a subject token. */
  serviceId: string;
  namespace: string;
  rootElement: string;
  responseRootElement: string | null;
  /** The `schema` body of admin `service.put`. */
  schema: {
    kind: "xsd";
    main: string;
    files: Record<string, string>;
    namespace: string;
    rootElement: string;
  };
  request: Uint8Array;
  /** The provider's sample answer, when the folder has one. */
  response: Uint8Array | null;
  invalidRequest: Uint8Array;
}

interface IndexEntry {
  type: string;
  namespace: string;
  rootElement: string;
  responseRootElement: string | null;
  xsd: string;
  request: string;
  response: string | null;
  invalidRequest: string;
}

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** The samples folder: MAGISTRAL_SMEV_SAMPLES, else `shared/data/smev` beside the repository. */
export function smevSamplesDir(): string {
  const fromEnv = process.env.MAGISTRAL_SMEV_SAMPLES;
  return fromEnv ? path.resolve(fromEnv) : path.resolve(REPO_ROOT, "../shared/data/smev");
}

let cached: SmevSample[] | undefined;

/**
 * Reads every type listed in the samples' index.json.
 * @throws Error naming the folder when it or its index is missing, so tests fail, not skip.
 */
export function loadSmevSamples(): SmevSample[] {
  cached ??= readSamples(smevSamplesDir());
  return cached;
}

function readSamples(dir: string): SmevSample[] {
  const indexFile = path.join(dir, "index.json");
  if (!existsSync(indexFile)) {
    throw new Error(
      `SMEV samples not found: ${indexFile} is missing. Place the samples folder at ` +
        `${dir} or point MAGISTRAL_SMEV_SAMPLES at it.`,
    );
  }
  const entries = JSON.parse(readFileSync(indexFile, "utf8")) as IndexEntry[];
  if (!Array.isArray(entries) || entries.length === 0) {
    throw new Error(`SMEV samples index ${indexFile} lists no types`);
  }
  return entries.map((entry) => toSample(dir, entry));
}

function toSample(dir: string, entry: IndexEntry): SmevSample {
  const read = (rel: string) => new Uint8Array(readFileSync(path.join(dir, rel)));
  return {
    type: entry.type,
    serviceId: toServiceId(entry.type),
    namespace: entry.namespace,
    rootElement: entry.rootElement,
    responseRootElement: entry.responseRootElement,
    schema: {
      ...xsdBundle(path.join(dir, entry.xsd)),
      namespace: entry.namespace,
      rootElement: entry.rootElement,
    },
    request: read(entry.request),
    response: entry.response ? read(entry.response) : null,
    invalidRequest: read(entry.invalidRequest),
  };
}

/** Service ids are subject tokens, so a type like `envelope-1.1` becomes `envelope-1_1`. */
export function toServiceId(type: string): string {
  return type.toLowerCase().replace(/[^a-z0-9_-]/g, "_");
}

/** The main XSD and every .xsd under its folder, keyed by path relative to that folder. */
export function xsdBundle(xsdFile: string): {
  kind: "xsd";
  main: string;
  files: Record<string, string>;
} {
  const root = path.dirname(xsdFile);
  const files: Record<string, string> = {};
  for (const rel of listXsd(root, "")) {
    files[rel] = readFileSync(path.join(root, rel), "utf8");
  }
  return { kind: "xsd", main: path.basename(xsdFile), files };
}

function listXsd(root: string, rel: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(path.join(root, rel), { withFileTypes: true })) {
    const child = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...listXsd(root, child));
    else if (entry.name.endsWith(".xsd")) out.push(child);
  }
  return out.sort();
}
