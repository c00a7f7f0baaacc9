import type { Context } from './context.ts';
import type { Channel } from './db/notifier.ts';

/**
 * What one pass of a worker reports: `busy` to run again at once (it filled a batch), or the delay in
 * milliseconds until it next has work it knows of (it sleeps until then, a wake-up, or the poll interval).
 */
export type TickResult = 'busy' | number;

/**
 * A background loop that never dies: it runs `tick` whenever woken or due, catches and records every failure
 * and backs off (never spinning hot on a failing database), and on `stop` lets the pass in flight finish.
 */
export class WorkerLoop {
  readonly #name: string;
  readonly #ctx: Context;
  readonly #tick: () => Promise<TickResult>;
  readonly #pollMs: number;
  readonly #settleMs: number;
  readonly #wakeOn: Channel | undefined;
  #unsubscribe: (() => void) | undefined;
  #running = false;
  #woken = false;
  #timer: NodeJS.Timeout | undefined;
  #resolveSleep: (() => void) | undefined;
  #done: Promise<void> | undefined;
  #failures = 0;

  /**
   * `wakeOn`: a notifier channel whose messages wake the loop while it runs (work was committed somewhere).
   * `settleMs`: after a pass that was not `busy`, wait this long before the next, so that work arriving in a
   * stream (events committed request by request) is taken in batches rather than one item per pass.
   */
  constructor(
    name: string,
    ctx: Context,
    tick: () => Promise<TickResult>,
    pollMs: number,
    options: { wakeOn?: Channel; settleMs?: number } = {},
  ) {
    this.#name = name;
    this.#ctx = ctx;
    this.#tick = tick;
    this.#pollMs = pollMs;
    this.#settleMs = options.settleMs ?? 0;
    this.#wakeOn = options.wakeOn;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    if (this.#wakeOn !== undefined)
      this.#unsubscribe = this.#ctx.store.notifier.subscribe(this.#wakeOn, () => this.wake());
    this.#done = this.#loop();
  }

  /** Ask for a pass soon (new work was committed). Cheap to call often. */
  wake(): void {
    this.#woken = true;
    this.#resolveSleep?.();
  }

  /** Stops after the pass in flight; resolves when it has finished. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#resolveSleep?.();
    await this.#done;
  }

  async #loop(): Promise<void> {
    while (this.#running) {
      this.#woken = false;
      let delay: number;
      try {
        const result = await this.#tick();
        this.#failures = 0;
        delay = result === 'busy' ? 0 : Math.min(Math.max(result, 0), this.#pollMs);
      } catch (error) {
        this.#failures++;
        this.#ctx.metrics.workerErrors.inc({ worker: this.#name });
        this.#ctx.log.error({ err: error, worker: this.#name }, 'worker pass failed; backing off');
        delay = Math.min(100 * 2 ** this.#failures, 5_000);
      }
      if (!this.#running) break;
      // A wake-up that came during the pass means new work: run again at once (unless backing off).
      const wokenMeanwhile = this.#woken && this.#failures === 0;
      if (delay === 0) await new Promise((r) => setImmediate(r));
      else {
        if (!wokenMeanwhile) await this.#sleep(delay);
        if (this.#settleMs > 0 && this.#running) await new Promise((r) => setTimeout(r, this.#settleMs));
      }
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#resolveSleep = () => {
        clearTimeout(this.#timer);
        this.#resolveSleep = undefined;
        resolve();
      };
      this.#timer = setTimeout(this.#resolveSleep, ms);
    });
  }
}
