import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyBaseLogger, FastifyInstance, RawServerDefault } from 'fastify';
import type { Context } from './context.ts';
import type { Ingestor } from './events/ingest.ts';
import type { Authenticator } from './http/auth.ts';
import type { InboxHub } from './notifications/hub.ts';

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
  readonly hub: InboxHub;
  /** The Prometheus exposition: this thread's metrics merged with the workers' threads'. */
  metricsText(): Promise<string>;
}
