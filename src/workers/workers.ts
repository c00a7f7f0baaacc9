import { Publisher } from '../announcements/publisher.ts';
import type { Context } from '../context.ts';
import { Dispatcher } from '../delivery/dispatcher.ts';
import { escalationTimerHandlers } from '../escalation/escalation.ts';
import { noiseTimerHandlers } from '../noise/noise.ts';
import { TimerWorker } from '../noise/timers.ts';
import { Router } from '../routing/router.ts';

/**
 * The background work one thread runs: all of it, or one of two halves. `routing` decides and creates (the
 * router, announcements, timers); `delivery` sends what they created (the dispatcher), so that a burst of
 * routing never stalls the sends in flight, and each half can use a core.
 */
export type WorkerShare = 'all' | 'routing' | 'delivery';

/**
 * Herald's background work: routing stored events, delivering, fanning out announcements and firing durable
 * timers. Each claims its work from the database, so any number of them (threads, nodes) can run at once.
 * `herald serve` runs them in worker threads of their own (thread.ts); tests build them in their own thread
 * and drive them pass by pass with `runOnce()`.
 */
export class Workers {
  readonly router: Router;
  readonly dispatcher: Dispatcher;
  readonly announcements: Publisher;
  /** Fires durable timers: escalations, reminders, noise control's flushes. */
  readonly timers: TimerWorker;

  constructor(ctx: Context) {
    this.router = new Router(ctx);
    this.dispatcher = new Dispatcher(ctx);
    this.announcements = new Publisher(ctx);
    this.timers = new TimerWorker(ctx, noiseTimerHandlers(ctx.store), escalationTimerHandlers(ctx.store));
  }

  /**
   * Starts the workers of `share` and returns their names; the others stay idle (stopping them is harmless).
   */
  start(share: WorkerShare = 'all'): string[] {
    const started: string[] = [];
    if (share !== 'delivery') {
      this.router.start();
      this.announcements.start();
      this.timers.start();
      started.push('router', 'announcements', 'timers');
    }
    if (share !== 'routing') {
      this.dispatcher.start();
      started.push('dispatcher');
    }
    return started;
  }

  /** Stops taking new work and waits for the work in flight (a delivery waits for its answer). */
  async stop(): Promise<void> {
    await this.router.stop();
    await this.dispatcher.stop();
    await this.announcements.stop();
    await this.timers.stop();
  }
}
