import type { AlertsMsg } from "../actors/alerts.ts";
import type { EventSink } from "./events.ts";
import type { Logger } from "./logger.ts";
import type { Mailbox } from "./mailbox.ts";
import type { BusConnection } from "./nats.ts";

/** What every actor of a broker node shares: its identity and its connections. */
export interface NodeContext {
  nodeId: string;
  bus: BusConnection;
  events: EventSink;
  log: Logger;
  /** Every running mailbox of this node, by owner (e.g. `service/<id>`), stopped at shutdown. */
  mailboxes: Map<string, Mailbox>;
  /** Hands a transition or happening to the alerts actor. */
  alert: (msg: AlertsMsg) => void;
}
