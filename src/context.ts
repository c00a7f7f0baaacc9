import type { FastifyBaseLogger } from 'fastify';
import type { Clock } from './clock.ts';
import type { Config } from './config.ts';
import type { Store } from './db/engine.ts';
import type { Metrics } from './metrics.ts';

/**
 * What every part of Herald is handed: configuration, the store, the clock and the shared instruments.
 * Route modules and workers receive it explicitly; nothing reads globals.
 */
export interface Context {
  readonly config: Config;
  readonly store: Store;
  readonly clock: Clock;
  readonly log: FastifyBaseLogger;
  readonly metrics: Metrics;
}
