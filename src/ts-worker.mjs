// Runs a TypeScript worker module under tsx (tests and development): a
// worker thread does not inherit the loader its parent was started with.
import { workerData } from "node:worker_threads";
import { register } from "tsx/esm/api";

register();
await import(workerData.entry);
