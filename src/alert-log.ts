import type { JetStreamManager } from "@nats-io/jetstream";
import type { Alert } from "../actors/alerts.ts";
import { decodeValue } from "./envelope.ts";
import { STREAM } from "./subjects.ts";

export interface AlertQuery {
  limit?: number;
  service?: string;
  severity?: string;
}

/** The most recent alerts in ALERTS, newest last, read backwards from the end of the stream. */
export async function recentAlerts(jsm: JetStreamManager, query: AlertQuery): Promise<Alert[]> {
  const limit = query.limit ?? 50;
  const info = await jsm.streams.info(STREAM.alerts);
  const { first_seq: first, last_seq: last, messages } = info.state;
  const out: Alert[] = [];
  if (messages === 0) return out;
  const floor = Math.max(first, last - limit * 20);
  for (let seq = last; seq >= floor && out.length < limit; seq--) {
    const stored = await jsm.streams.getMessage(STREAM.alerts, { seq }).catch(() => null);
    if (!stored) continue;
    const alert = decodeValue(stored.data) as Alert;
    if (query.service && alert.service !== query.service) continue;
    if (query.severity && alert.severity !== query.severity) continue;
    out.push(alert);
  }
  return out.reverse();
}
