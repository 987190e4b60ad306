import { pino } from "pino";

export type Logger = pino.Logger;

/** The root logger; every component takes a child with `{ component }`. */
export const rootLogger: Logger = pino({
  level: process.env.MAGISTRAL_LOG_LEVEL ?? "info",
  base: { pid: process.pid },
});

export function componentLogger(component: string, fields: Record<string, unknown> = {}): Logger {
  return rootLogger.child({ component, ...fields });
}
