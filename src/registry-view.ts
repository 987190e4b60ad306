import { ErrorCode, MagistralError } from "./errors.ts";
import type { Agency, RegistryStore, ServiceDef } from "./registry.ts";
import { compileSchema, type PayloadValidator, xmlRoot } from "./schema.ts";

/**
 * This node's read-only copy of the service registry, kept current by the
 * registry actor, read by the API on every submit without touching NATS.
 */
export class RegistryView {
  private readonly services = new Map<string, ServiceDef>();
  private readonly agencies = new Map<string, Agency>();
  private readonly byXmlRoot = new Map<string, string>();
  private readonly validators = new Map<
    string,
    { revision: number; validator: PayloadValidator }
  >();

  constructor(private readonly store: RegistryStore) {}

  set(def: ServiceDef): void {
    const before = this.services.get(def.id);
    if (before?.schema?.namespace !== undefined) {
      this.byXmlRoot.delete(rootKey(before.schema.namespace, before.schema.rootElement ?? ""));
    }
    this.services.set(def.id, def);
    if (def.schema?.kind === "xsd" && def.schema.rootElement) {
      this.byXmlRoot.set(rootKey(def.schema.namespace ?? "", def.schema.rootElement), def.id);
    }
    const cached = this.validators.get(def.id);
    if (cached && cached.revision !== def.schema?.revision) this.dropValidator(def.id);
  }

  delete(id: string): void {
    const def = this.services.get(id);
    if (def?.schema?.rootElement) {
      this.byXmlRoot.delete(rootKey(def.schema.namespace ?? "", def.schema.rootElement));
    }
    this.services.delete(id);
    this.dropValidator(id);
  }

  setAgency(agency: Agency): void {
    this.agencies.set(agency.id, agency);
  }

  deleteAgency(id: string): void {
    this.agencies.delete(id);
  }

  agency(id: string): Agency | undefined {
    return this.agencies.get(id);
  }

  listAgencies(): Agency[] {
    return [...this.agencies.values()];
  }

  get(id: string): ServiceDef | undefined {
    return this.services.get(id);
  }

  list(): ServiceDef[] {
    return [...this.services.values()];
  }

  /**
   * The service a request is for: the one it names, or, as in SMEV, the one
   * registered for the namespace and root element of its XML payload.
   * @throws MagistralError UNKNOWN_SERVICE
   */
  resolve(named: string | undefined, payload: Uint8Array): ServiceDef {
    const id = named ?? this.routeByXml(payload);
    const def = id === undefined ? undefined : this.services.get(id);
    if (!def || def.status === "retired") {
      throw new MagistralError(
        ErrorCode.UNKNOWN_SERVICE,
        named ? `no service ${named}` : "no service is registered for this payload's root element",
      );
    }
    return def;
  }

  /** The service that unnamed XML requests with this root element go to, if any. */
  serviceForRoot(namespace: string, rootElement: string): string | undefined {
    return this.byXmlRoot.get(rootKey(namespace, rootElement));
  }

  private routeByXml(payload: Uint8Array): string | undefined {
    const root = xmlRoot(payload);
    return root ? this.byXmlRoot.get(rootKey(root.namespace, root.rootElement)) : undefined;
  }

  /** The compiled request schema of a service, fetched and compiled once per revision. */
  async validator(def: ServiceDef): Promise<PayloadValidator | undefined> {
    if (!def.schema) return undefined;
    const cached = this.validators.get(def.id);
    if (cached?.revision === def.schema.revision) return cached.validator;
    const bundle = await this.store.getSchema(def.id);
    if (!bundle) {
      throw new MagistralError(
        ErrorCode.INTERNAL,
        `schema of ${def.id} is missing from the registry`,
      );
    }
    const current = this.validators.get(def.id);
    if (current?.revision === def.schema.revision) return current.validator;
    const { namespace, rootElement } = def.schema;
    const root = rootElement ? { namespace: namespace ?? "", rootElement } : undefined;
    const validator = compileSchema(`${def.id}/${def.schema.revision}`, bundle, root);
    this.dropValidator(def.id);
    this.validators.set(def.id, { revision: def.schema.revision, validator });
    return validator;
  }

  private dropValidator(id: string) {
    this.validators.get(id)?.validator.dispose();
    this.validators.delete(id);
  }
}

function rootKey(namespace: string, rootElement: string): string {
  return `{${namespace}}${rootElement}`;
}
