import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { ErrorCode, MagistralError } from "../../src/errors.ts";

/** The `schema` part of an admin `service.put` body. */
export type SchemaInput =
  | { kind: "xsd"; main: string; files: Record<string, string>; rootElement?: string }
  | { kind: "json"; schema: Record<string, unknown> };

/** More files than this under an XSD's folder is taken as pointing at the wrong folder. */
const MAX_XSD_FILES = 200;

/**
 * Bundles an XSD with every `.xsd` under its folder, keyed by path relative
 * to that folder, so its imports and includes resolve inside the bundle.
 * @throws MagistralError BAD_REQUEST when the file is missing or the folder is too large
 */
export function xsdSchema(mainFile: string, rootElement?: string): SchemaInput {
  const dir = path.dirname(path.resolve(mainFile));
  const main = toPosix(path.relative(dir, path.resolve(mainFile)));
  const files: Record<string, string> = { [main]: readText(mainFile) };
  for (const file of xsdFilesUnder(dir, dir)) {
    files[toPosix(path.relative(dir, file))] ??= readText(file);
  }
  const schema: SchemaInput = { kind: "xsd", main, files };
  if (rootElement) schema.rootElement = rootElement;
  return schema;
}

/** A JSON Schema read from a file. @throws MagistralError BAD_REQUEST */
export function jsonSchema(file: string): SchemaInput {
  const value = readJson(file);
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new MagistralError(ErrorCode.BAD_REQUEST, `${file}: a JSON Schema must be an object`);
  }
  return { kind: "json", schema: value as Record<string, unknown> };
}

/** Parses a JSON file. @throws MagistralError BAD_REQUEST */
export function readJson(file: string): unknown {
  const text = readText(file);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new MagistralError(ErrorCode.BAD_REQUEST, `${file} is not valid JSON`, { cause: err });
  }
}

function xsdFilesUnder(dir: string, root: string, found: string[] = []): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) xsdFilesUnder(full, root, found);
    else if (entry.isFile() && entry.name.toLowerCase().endsWith(".xsd")) found.push(full);
    if (found.length > MAX_XSD_FILES) {
      throw new MagistralError(
        ErrorCode.BAD_REQUEST,
        `more than ${MAX_XSD_FILES} .xsd files under ${root}; ` +
          "keep a service's schema in its own folder",
      );
    }
  }
  return found;
}

function readText(file: string): string {
  try {
    if (!statSync(file).isFile()) throw new Error("not a file");
    return readFileSync(file, "utf8");
  } catch (err) {
    throw new MagistralError(ErrorCode.BAD_REQUEST, `cannot read ${file}`, { cause: err });
  }
}

function toPosix(rel: string): string {
  return rel.split(path.sep).join("/");
}
