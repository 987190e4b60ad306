// The example agencies and services of the demo: who they are, what they
// provide, under which schema, and what adapter serves each service.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { jsonSchema, type SchemaInput, xsdSchema } from "../scripts/admin/schema-files.ts";
import type { AgencyRole, ServiceDef } from "../src/registry.ts";

const SCHEMAS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), "schemas");

export interface ExampleAgency {
  id: string;
  name: string;
  roles: AgencyRole[];
  contact: string;
}

export const AGENCIES: ExampleAgency[] = [
  {
    id: "fns",
    name: "Federal Tax Service (example)",
    roles: ["consumer", "provider"],
    contact: "smev-duty@fns.example",
  },
  {
    id: "pfr",
    name: "Pension and Social Insurance Fund (example)",
    roles: ["consumer", "provider"],
    contact: "integration@pfr.example",
  },
  {
    id: "rosreestr",
    name: "Federal Registration Service (example)",
    roles: ["provider"],
    contact: "egrn-support@rosreestr.example",
  },
  {
    id: "mfc",
    name: "Multifunctional Public Service Centre, Moscow (example)",
    roles: ["consumer"],
    contact: "it@mfc.example",
  },
];

export type ExampleService = Pick<ServiceDef, "id" | "owner" | "version" | "description"> &
  Partial<Pick<ServiceDef, "callTimeoutMs" | "adapter">> & {
    retry?: Partial<ServiceDef["retry"]>;
    /** Builds the `schema` body of `service.put` from the files under examples/schemas. */
    schema: () => SchemaInput;
  };

export const EGRUL_NS = "urn://magistral-example/fns/egrul-extract/1.0.0";
export const SNILS_NS = "urn://magistral-example/pfr/snils-check/1.0.0";

export const SERVICES: ExampleService[] = [
  {
    id: "fns-egrul-extract",
    owner: "fns",
    version: "1.2.0",
    description: "Extract from the register of legal entities (EGRUL) by OGRN or INN",
    callTimeoutMs: 5_000,
    adapter: {
      software: { name: "egrul-gateway", version: "3.4.1", vendor: "FNS IT", platform: "Node.js" },
      hardware: { host: "egrul-gw-01.fns.example", cpu: "8 vCPU", memoryMb: 16_384 },
    },
    schema: () =>
      xsdSchema(
        path.join(SCHEMAS_DIR, "fns-egrul-extract/egrul-extract.xsd"),
        "EgrulExtractRequest",
      ),
  },
  {
    id: "pfr-snils-check",
    owner: "pfr",
    version: "2.0.0",
    description: "Checks that a SNILS belongs to the named person",
    callTimeoutMs: 3_000,
    adapter: {
      software: { name: "pfr-personal-accounts", version: "2.0.7", platform: "JVM 17" },
      hardware: { host: "pa-adapter-02.pfr.example", os: "Astra Linux 1.7", location: "DC-2" },
    },
    schema: () =>
      xsdSchema(path.join(SCHEMAS_DIR, "pfr-snils-check/snils-check.xsd"), "SnilsCheckRequest"),
  },
  {
    id: "rosreestr-egrn-extract",
    owner: "rosreestr",
    version: "1.0.3",
    description: "Main facts of a real estate object from the EGRN, by cadastral number (JSON)",
    callTimeoutMs: 5_000,
    // A short first delay so the demo's one retried request settles quickly.
    retry: { attempts: 5, firstDelayMs: 200, factor: 2, jitter: 0 },
    adapter: {
      software: { name: "egrn-json-adapter", version: "1.0.3", platform: "Go 1.22" },
      hardware: { host: "egrn-api-01.rosreestr.example", cpu: "4 vCPU", memoryMb: 8_192 },
    },
    schema: () => jsonSchema(path.join(SCHEMAS_DIR, "rosreestr-egrn-extract/request.schema.json")),
  },
];
