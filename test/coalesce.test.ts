import test from "ava";
import { coalescing } from "../src/coalesce.ts";

test("items handed over in one run arrive as one batch, in order; a later run starts another", async (t) => {
  const batches: number[][] = [];
  const give = coalescing<number>((items) => batches.push(items));
  for (let i = 0; i < 5; i++) give(i);
  t.deepEqual(batches, [], "nothing is handed on before the run ends");
  await Promise.resolve();
  t.deepEqual(batches, [[0, 1, 2, 3, 4]]);

  await new Promise((resolve) => setImmediate(resolve));
  give(5);
  give(6);
  await new Promise((resolve) => setImmediate(resolve));
  t.deepEqual(batches, [
    [0, 1, 2, 3, 4],
    [5, 6],
  ]);
});

test("across a turn: items given between awaits of one run still arrive as one batch", async (t) => {
  const batches: number[][] = [];
  const give = coalescing<number>((items) => batches.push(items), { across: "turn" });
  async function* entries() {
    for (let i = 0; i < 4; i++) yield i;
  }
  for await (const i of entries()) give(i);
  t.deepEqual(batches, [], "microtasks between items do not end the batch");
  await new Promise((resolve) => setImmediate(resolve));
  t.deepEqual(batches, [[0, 1, 2, 3]]);

  const perMicrotask: number[][] = [];
  const giveSoon = coalescing<number>((items) => perMicrotask.push(items));
  for await (const i of entries()) giveSoon(i);
  t.true(perMicrotask.length > 1, "the default ends a batch at each await");
});
