import { XmlDocument } from "libxml2-wasm";

/** Reads text values out of an XML payload by XPath with the given prefixes. */
export function readXml<T>(
  payload: Uint8Array,
  namespaces: Record<string, string>,
  read: (text: (xpath: string) => string | undefined) => T,
): T {
  const doc = XmlDocument.fromBuffer(payload);
  try {
    return read((xpath) => doc.get(xpath, namespaces)?.content);
  } finally {
    doc.dispose();
  }
}

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&apos;",
};

/** Escapes text for an XML element or attribute value. */
export function esc(value: string | number): string {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** An element with escaped text, or nothing when the value is absent. */
export function el(name: string, value: string | number | undefined): string {
  return value === undefined ? "" : `<${name}>${esc(value)}</${name}>`;
}
