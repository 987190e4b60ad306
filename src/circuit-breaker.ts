/** When a service's circuit opens, and for how long. Durations in milliseconds. */
export interface CircuitPolicy {
  /** Consecutive failed calls that open the circuit. */
  consecutiveFailures: number;
  /** Failure ratio over the window that opens the circuit, 0..1. */
  failureRate: number;
  /** Calls the window must hold before the rate counts. */
  minCalls: number;
  windowMs: number;
  /** How long the circuit stays open before one probe call is let through. */
  openMs: number;
}

export const DEFAULT_CIRCUIT: CircuitPolicy = {
  consecutiveFailures: 5,
  failureRate: 0.5,
  minCalls: 20,
  windowMs: 30_000,
  openMs: 5_000,
};

export type CircuitState = "closed" | "open" | "half-open";

/** What a recorded outcome changed; the owner acts on transitions only. */
export type CircuitTransition = { from: CircuitState; to: CircuitState } | undefined;

/**
 * A circuit breaker of one provider lane: closed lets every call through,
 * open lets none, half-open lets one probe through. Pure state: the owner
 * feeds it outcomes and the clock, and schedules the half-open timer.
 */
export class CircuitBreaker {
  state: CircuitState = "closed";
  openedAt = 0;
  private consecutive = 0;
  private window: { at: number; ok: boolean }[] = [];

  constructor(private policy: CircuitPolicy) {}

  setPolicy(policy: CircuitPolicy): void {
    this.policy = policy;
  }

  /** How many calls may be in flight in the current state, given the lane's concurrency. */
  allowance(concurrency: number): number {
    if (this.state === "open") return 0;
    if (this.state === "half-open") return 1;
    return concurrency;
  }

  recordSuccess(now = Date.now()): CircuitTransition {
    this.consecutive = 0;
    this.remember(now, true);
    if (this.state === "closed") return undefined;
    return this.move("closed");
  }

  recordFailure(now = Date.now()): CircuitTransition {
    this.consecutive++;
    this.remember(now, false);
    if (this.state === "half-open") return this.trip(now);
    if (this.state === "closed" && this.shouldTrip()) return this.trip(now);
    return undefined;
  }

  /** Called when the open period has passed: the next call is a probe. */
  halfOpen(): CircuitTransition {
    if (this.state !== "open") return undefined;
    return this.move("half-open");
  }

  /** Failure ratio in the current window, 0 when it is empty. */
  failureRatio(now = Date.now()): number {
    this.prune(now);
    if (this.window.length === 0) return 0;
    return this.window.filter((c) => !c.ok).length / this.window.length;
  }

  private shouldTrip(): boolean {
    if (this.consecutive >= this.policy.consecutiveFailures) return true;
    return (
      this.window.length >= this.policy.minCalls && this.failureRatio() >= this.policy.failureRate
    );
  }

  private trip(now: number): CircuitTransition {
    this.openedAt = now;
    return this.move("open");
  }

  private move(to: CircuitState): CircuitTransition {
    const from = this.state;
    this.state = to;
    if (to === "closed") {
      this.consecutive = 0;
      this.window = [];
    }
    return { from, to };
  }

  private remember(now: number, ok: boolean) {
    this.window.push({ at: now, ok });
    this.prune(now);
  }

  private prune(now: number) {
    const since = now - this.policy.windowMs;
    let drop = 0;
    while (drop < this.window.length && this.window[drop]!.at < since) drop++;
    if (drop > 0) this.window.splice(0, drop);
    if (this.window.length > 1_000) this.window.splice(0, this.window.length - 1_000);
  }
}
