// The provider adapters of the demo: each agency answers calls for its own
// service from a small in-memory register. They read and write payloads the
// way a real adapter would: XML by namespace, JSON by schema.
import type { ProviderHandler } from "../src/client.ts";
import { EGRUL_NS, SNILS_NS } from "./catalog.ts";
import { el, esc, readXml } from "./xml.ts";

interface Organization {
  fullName: string;
  shortName: string;
  ogrn: string;
  inn: string;
  kpp: string;
  registeredOn: string;
  status: "ACTIVE" | "REORGANIZING" | "LIQUIDATED";
  address: { postalCode: string; region: string; city: string; street: string; house: string };
  director: { family: string; first: string; patronymic: string; position: string };
}

const EGRUL: Organization[] = [
  {
    fullName: "Общество с ограниченной ответственностью «Северный ветер»",
    shortName: "ООО «Северный ветер»",
    ogrn: "1157746012346",
    inn: "7704123450",
    kpp: "770401001",
    registeredOn: "2015-03-12",
    status: "ACTIVE",
    address: {
      postalCode: "119019",
      region: "77",
      city: "Москва",
      street: "ул. Новый Арбат",
      house: "д. 11",
    },
    director: {
      family: "Соколова",
      first: "Анна",
      patronymic: "Викторовна",
      position: "Генеральный директор",
    },
  },
  {
    fullName: "Акционерное общество «Подмосковные теплосети»",
    shortName: "АО «Подмосковные теплосети»",
    ogrn: "1025001234565",
    inn: "5029012343",
    kpp: "502901001",
    registeredOn: "2002-09-30",
    status: "ACTIVE",
    address: {
      postalCode: "141002",
      region: "50",
      city: "Мытищи",
      street: "ул. Мира",
      house: "д. 5",
    },
    director: { family: "Петров", first: "Игорь", patronymic: "Сергеевич", position: "Директор" },
  },
  {
    fullName: "Общество с ограниченной ответственностью «Балтийская верфь-сервис»",
    shortName: "ООО «Балтийская верфь-сервис»",
    ogrn: "1177847009878",
    inn: "7810555123",
    kpp: "781001001",
    registeredOn: "2017-04-05",
    status: "LIQUIDATED",
    address: {
      postalCode: "196084",
      region: "78",
      city: "Санкт-Петербург",
      street: "Московский пр.",
      house: "д. 97",
    },
    director: { family: "Иванов", first: "Павел", patronymic: "Андреевич", position: "Ликвидатор" },
  },
];

/** The tax service's adapter: EGRUL extracts by OGRN or INN. */
export const egrulExtract: ProviderHandler = (call) => {
  const q = readXml(call.payload, { e: EGRUL_NS }, (text) => ({
    requestId: text("/e:EgrulExtractRequest/@RequestId") ?? "unknown",
    ogrn: text("/e:EgrulExtractRequest/e:OGRN"),
    inn: text("/e:EgrulExtractRequest/e:INN"),
  }));
  const org = EGRUL.find((o) => o.ogrn === q.ogrn || o.inn === q.inn);
  const body = org ? organizationXml(org) : "<NotFound/>";
  return [
    `<EgrulExtractResponse xmlns="${EGRUL_NS}" RequestId="${esc(q.requestId)}">`,
    body,
    el("ExtractDate", new Date().toISOString()),
    "</EgrulExtractResponse>",
  ].join("");
};

function organizationXml(o: Organization): string {
  const a = o.address;
  const d = o.director;
  return [
    "<Organization>",
    el("FullName", o.fullName),
    el("ShortName", o.shortName),
    el("OGRN", o.ogrn),
    el("INN", o.inn),
    el("KPP", o.kpp),
    el("RegistrationDate", o.registeredOn),
    el("Status", o.status),
    "<Address>",
    `${el("PostalCode", a.postalCode)}${el("Region", a.region)}${el("City", a.city)}`,
    `${el("Street", a.street)}${el("House", a.house)}`,
    "</Address>",
    "<Director>",
    `${el("FamilyName", d.family)}${el("FirstName", d.first)}${el("Patronymic", d.patronymic)}`,
    el("Position", d.position),
    "</Director>",
    "</Organization>",
  ].join("");
}

interface InsuredPerson {
  snils: string;
  family: string;
  first: string;
  patronymic?: string;
  birthDate: string;
}

const PERSONAL_ACCOUNTS: InsuredPerson[] = [
  {
    snils: "112-233-445 95",
    family: "Кузнецова",
    first: "Мария",
    patronymic: "Ивановна",
    birthDate: "1985-07-14",
  },
  {
    snils: "156-789-012 11",
    family: "Смирнов",
    first: "Алексей",
    patronymic: "Петрович",
    birthDate: "1979-11-02",
  },
  {
    snils: "098-765-432 38",
    family: "Орлова",
    first: "Екатерина",
    patronymic: "Дмитриевна",
    birthDate: "1992-01-23",
  },
];

/** The pension fund's adapter: does the SNILS belong to the person named? */
export const snilsCheck: ProviderHandler = (call) => {
  const q = readXml(call.payload, { p: SNILS_NS }, (text) => ({
    snils: text("/p:SnilsCheckRequest/p:SNILS") ?? "",
    family: text("/p:SnilsCheckRequest/p:Person/p:FamilyName"),
    first: text("/p:SnilsCheckRequest/p:Person/p:FirstName"),
    birthDate: text("/p:SnilsCheckRequest/p:Person/p:BirthDate"),
  }));
  const person = PERSONAL_ACCOUNTS.find((p) => p.snils === q.snils);
  let result: string;
  if (!snilsChecksumValid(q.snils)) result = "INVALID_CHECKSUM";
  else if (!person) result = "NOT_FOUND";
  else {
    const same =
      person.family === q.family && person.first === q.first && person.birthDate === q.birthDate;
    result = same ? "MATCH" : "MISMATCH";
  }
  return [
    `<SnilsCheckResponse xmlns="${SNILS_NS}">`,
    el("SNILS", q.snils),
    el("Result", result),
    el("CheckedAt", new Date().toISOString()),
    "</SnilsCheckResponse>",
  ].join("");
};

/** The SNILS control number: a weighted sum of the nine digits, modulo 101. */
export function snilsChecksumValid(snils: string): boolean {
  const digits = snils.replace(/\D/g, "");
  if (digits.length !== 11) return false;
  let sum = 0;
  for (let i = 0; i < 9; i++) sum += Number(digits[i]) * (9 - i);
  const control = sum < 100 ? sum : sum % 101 === 100 ? 0 : sum % 101;
  return control === Number(digits.slice(9));
}

interface RealEstateObject {
  cadastralNumber: string;
  objectType: "APARTMENT" | "LAND_PLOT" | "NON_RESIDENTIAL";
  areaSqM: number;
  address: string;
  cadastralValueRub: number;
  rightsRegistered: number;
}

const EGRN: RealEstateObject[] = [
  {
    cadastralNumber: "77:01:0004012:1035",
    objectType: "APARTMENT",
    areaSqM: 54.3,
    address: "г. Москва, ул. Новый Арбат, д. 11, кв. 48",
    cadastralValueRub: 18_450_000,
    rightsRegistered: 2,
  },
  {
    cadastralNumber: "50:12:0010203:217",
    objectType: "LAND_PLOT",
    areaSqM: 1_200,
    address: "Московская обл., г. Мытищи, ул. Лесная, уч. 14",
    cadastralValueRub: 3_960_000,
    rightsRegistered: 1,
  },
  {
    cadastralNumber: "78:14:0007711:3056",
    objectType: "NON_RESIDENTIAL",
    areaSqM: 312.8,
    address: "г. Санкт-Петербург, Московский пр., д. 97, пом. 2-Н",
    cadastralValueRub: 41_700_000,
    rightsRegistered: 3,
  },
];

/** A register replica that is still catching up refuses this object's first call. */
const CATCHING_UP = "50:12:0010203:217";

/** The registration service's adapter: EGRN facts as JSON. */
export const egrnExtract: ProviderHandler = (call) => {
  const q = JSON.parse(new TextDecoder().decode(call.payload)) as {
    requestId: string;
    cadastralNumber: string;
  };
  if (q.cadastralNumber === CATCHING_UP && call.attempt === 1) {
    // Thrown errors reach the bus as PROVIDER_FAULT, and the bus calls again later.
    throw new Error("EGRN replica is catching up, call again later");
  }
  const found = EGRN.find((o) => o.cadastralNumber === q.cadastralNumber);
  const answer = found
    ? { requestId: q.requestId, found: true, ...found, extractedAt: new Date().toISOString() }
    : { requestId: q.requestId, found: false, cadastralNumber: q.cadastralNumber };
  return { payload: JSON.stringify(answer), contentType: "application/json" };
};

/** Provider handlers by service id. */
export const PROVIDERS: Record<string, ProviderHandler> = {
  "fns-egrul-extract": egrulExtract,
  "pfr-snils-check": snilsCheck,
  "rosreestr-egrn-extract": egrnExtract,
};
