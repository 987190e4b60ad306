/**
 * Gathers what is handed over in one run of the event loop (one socket
 * read's messages, one burst of settled calls) into one array, handed on
 * once the run's synchronous work and queued microtasks are done.
 *
 * nact runs every message of an actor in a `setImmediate` of its own, so an
 * actor gets through at most one message per turn of the event loop. A
 * service actor given each delivery and each settled call as a message of
 * its own was the broker's bottleneck: at 500 requests in flight they waited
 * in its mailbox ~100 ms while the CPU was a quarter idle (npm run bench).
 *
 * By default a batch ends with the microtasks queued behind its first item.
 * A producer that awaits between items (a `for await` over a subscription's
 * messages) yields a microtask per item and so would hand each on alone:
 * `across: "turn"` gathers until the next turn of the event loop instead,
 * which takes a whole socket read's worth, at the cost of that turn's delay.
 */
export function coalescing<T>(
  handOn: (items: T[]) => void,
  opts: { across?: "microtasks" | "turn" } = {},
): (item: T) => void {
  const schedule = opts.across === "turn" ? setImmediate : queueMicrotask;
  let items: T[] = [];
  const flush = () => {
    const batch = items;
    items = [];
    handOn(batch);
  };
  return (item) => {
    items.push(item);
    if (items.length === 1) schedule(flush);
  };
}
