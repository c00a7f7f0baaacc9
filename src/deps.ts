import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyBaseLogger, FastifyInstance, RawServerDefault } from 'fastify';
import type { Publisher } from './announcements/publisher.ts';
import type { Context } from './context.ts';
import type { Dispatcher } from './delivery/dispatcher.ts';
import type { Ingestor } from './events/ingest.ts';
import type { Authenticator } from './http/auth.ts';
import type { TimerWorker } from './noise/timers.ts';
import type { InboxHub } from './notifications/hub.ts';
import type { Router } from './routing/router.ts';

/** The Fastify instance with TypeBox typing, as route modules see it. */
export type App = FastifyInstance<
  RawServerDefault,
  IncomingMessage,
  ServerResponse,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

/** Everything route modules may use: the context plus the long-lived services built once per app. */
export interface Deps extends Context {
  readonly auth: Authenticator;
  readonly ingest: Ingestor;
  readonly router: Router;
  readonly dispatcher: Dispatcher;
  readonly hub: InboxHub;
  /** Publishes, fans out and withdraws announcements. */
  readonly announcements: Publisher;
  /** Fires durable timers (noise control's flushes). */
  readonly timers: TimerWorker;
}
