// The requests the demo sends: who sends what to whom, and what the bus
// should make of it. Payloads are built here so each stays short to read.
import { EGRUL_NS, SNILS_NS } from "./catalog.ts";
import { el, esc, readXml } from "./xml.ts";

export interface DemoRequest {
  /** The consumer agency that sends it. */
  from: string;
  /** The service it is for. */
  service: string;
  /** False: the service is not named, the bus routes by the XML root element. */
  named: boolean;
  /** What the request asks, for the demo's output. */
  title: string;
  payload: string;
  /** "response", or the error code the bus must refuse it with. */
  expect: "response" | "SCHEMA_INVALID";
}

type Purpose = "PUBLIC_SERVICE" | "EMPLOYER_CHECK" | "TAX_CONTROL";

function egrulRequest(requestId: string, key: { ogrn?: string; inn?: string }, p: Purpose) {
  return [
    `<EgrulExtractRequest xmlns="${EGRUL_NS}" RequestId="${esc(requestId)}">`,
    el("OGRN", key.ogrn),
    el("INN", key.inn),
    el("Purpose", p),
    "</EgrulExtractRequest>",
  ].join("");
}

interface Person {
  family: string;
  first: string;
  patronymic?: string;
  birthDate: string;
  gender: "Male" | "Female";
}

function snilsRequest(snils: string, p: Person) {
  return [
    `<SnilsCheckRequest xmlns="${SNILS_NS}">`,
    el("SNILS", snils),
    "<Person>",
    `${el("FamilyName", p.family)}${el("FirstName", p.first)}${el("Patronymic", p.patronymic)}`,
    `${el("BirthDate", p.birthDate)}${el("Gender", p.gender)}`,
    "</Person>",
    "</SnilsCheckRequest>",
  ].join("");
}

function egrnRequest(requestId: string, cadastralNumber: string, agency: string, caseNo: string) {
  return JSON.stringify({
    requestId,
    cadastralNumber,
    extractType: "BASIC_FACTS",
    requester: { agency, caseNumber: caseNo },
  });
}

const KUZNETSOVA: Person = {
  family: "Кузнецова",
  first: "Мария",
  patronymic: "Ивановна",
  birthDate: "1985-07-14",
  gender: "Female",
};
const SMIRNOV: Person = {
  family: "Смирнов",
  first: "Алексей",
  patronymic: "Петрович",
  birthDate: "1979-11-02",
  gender: "Male",
};
const ORLOVA: Person = {
  family: "Орлова",
  first: "Екатерина",
  patronymic: "Дмитриевна",
  birthDate: "1992-01-23",
  gender: "Female",
};

const EGRUL = "fns-egrul-extract";
const SNILS = "pfr-snils-check";
const EGRN = "rosreestr-egrn-extract";

/** Sixteen requests from three consumers; three of them must be refused. */
export const DEMO_REQUESTS: DemoRequest[] = [
  req("mfc", EGRUL, "EGRUL extract by OGRN 1157746012346", {
    payload: egrulRequest("MFC-0001", { ogrn: "1157746012346" }, "PUBLIC_SERVICE"),
  }),
  req("mfc", EGRUL, "EGRUL extract by INN 5029012343", {
    payload: egrulRequest("MFC-0002", { inn: "5029012343" }, "PUBLIC_SERVICE"),
  }),
  req("mfc", EGRUL, "EGRUL extract for an OGRN nobody registered", {
    payload: egrulRequest("MFC-0003", { ogrn: "1207803005552" }, "PUBLIC_SERVICE"),
  }),
  req("mfc", EGRUL, "EGRUL extract by OGRN 1177847009878, service not named", {
    named: false,
    payload: egrulRequest("MFC-0004", { ogrn: "1177847009878" }, "PUBLIC_SERVICE"),
  }),
  req("mfc", SNILS, "SNILS check of Кузнецова М. И.", {
    payload: snilsRequest("112-233-445 95", KUZNETSOVA),
  }),
  req("mfc", SNILS, "SNILS check with another person's name", {
    payload: snilsRequest("156-789-012 11", { ...SMIRNOV, first: "Андрей" }),
  }),
  req("mfc", SNILS, "SNILS check with a number cut short", {
    payload: snilsRequest("112-233-44", KUZNETSOVA),
    expect: "SCHEMA_INVALID",
  }),
  req("mfc", EGRN, "EGRN facts of flat 77:01:0004012:1035", {
    payload: egrnRequest("MFC-0008", "77:01:0004012:1035", "mfc", "MFC/2024/118734"),
  }),
  req("mfc", EGRN, "EGRN facts of land plot 50:12:0010203:217 (provider busy once)", {
    payload: egrnRequest("MFC-0009", "50:12:0010203:217", "mfc", "MFC/2024/118735"),
  }),
  req("mfc", EGRN, "EGRN facts with a malformed cadastral number", {
    payload: egrnRequest("MFC-0010", "77-01-4012-1035", "mfc", "MFC/2024/118736"),
    expect: "SCHEMA_INVALID",
  }),
  req("pfr", EGRUL, "employer check by INN 7704123450", {
    payload: egrulRequest("PFR-77-5521", { inn: "7704123450" }, "EMPLOYER_CHECK"),
  }),
  req("pfr", EGRUL, "employer check by OGRN 1177847009878", {
    payload: egrulRequest("PFR-78-0193", { ogrn: "1177847009878" }, "EMPLOYER_CHECK"),
  }),
  req("fns", SNILS, "SNILS check of Орлова Е. Д.", {
    payload: snilsRequest("098-765-432 38", ORLOVA),
  }),
  req("fns", SNILS, "SNILS check with a wrong control number, service not named", {
    named: false,
    payload: snilsRequest("123-456-789 00", SMIRNOV),
  }),
  req("fns", EGRN, "EGRN facts of premises 78:14:0007711:3056 for property tax", {
    payload: egrnRequest("FNS-7810-44", "78:14:0007711:3056", "fns", "ФНС/7810/2024-0912"),
  }),
  req("fns", EGRUL, "EGRUL extract with both OGRN and INN", {
    payload: egrulRequest("FNS-0016", { ogrn: "1025001234565", inn: "5029012343" }, "TAX_CONTROL"),
    expect: "SCHEMA_INVALID",
  }),
];

function req(
  from: string,
  service: string,
  title: string,
  rest: Pick<DemoRequest, "payload"> & Partial<Pick<DemoRequest, "named" | "expect">>,
): DemoRequest {
  return { from, service, title, named: true, expect: "response", ...rest };
}

/** One line about an answer, for the demo's output. */
export function summarizeAnswer(service: string, payload: Uint8Array): string {
  if (service === EGRUL) {
    return readXml(payload, { e: EGRUL_NS }, (text) => {
      const name = text("//e:Organization/e:ShortName");
      return name ? `${name}, ${text("//e:Organization/e:Status")}` : "not in the register";
    });
  }
  if (service === SNILS) {
    return readXml(payload, { p: SNILS_NS }, (text) => text("//p:Result") ?? "?");
  }
  const answer = JSON.parse(new TextDecoder().decode(payload));
  if (!answer.found) return "not in the register";
  const value = answer.cadastralValueRub.toLocaleString("ru-RU");
  return `${answer.objectType}, ${answer.areaSqM} m², cadastral value ${value} RUB`;
}
