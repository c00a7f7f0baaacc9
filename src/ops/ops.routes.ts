import { sql } from 'kysely';
import { Type } from 'typebox';
import type { App, Deps } from '../deps.ts';
import { HeraldError } from '../errors.ts';
import { bearerToken, matchesSecret } from '../http/auth.ts';

/**
 * Liveness, readiness and Prometheus metrics, outside `/v1`: unauthenticated, except metrics when
 * `HERALD_METRICS_TOKEN` is set (they name sources, endpoints and channels, and show the traffic of each).
 */
export async function opsRoutes(app: App, deps: Deps): Promise<void> {
  const { metricsToken } = deps.config;
  const isMetricsToken = metricsToken === undefined ? undefined : matchesSecret(metricsToken);
  const Status = Type.Object({ status: Type.String() });

  app.get(
    '/healthz',
    { schema: { tags: ['operations'], summary: 'The process is alive', response: { 200: Status } } },
    async () => ({
      status: 'ok',
    }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['operations'],
        summary: 'The database answers and Herald can take traffic',
        response: { 200: Type.Object({ status: Type.String(), engine: Type.String() }) },
      },
    },
    async () => {
      try {
        await sql`select 1`.execute(deps.store.db);
      } catch (error) {
        throw new HeraldError('unavailable', 'The database does not answer', { cause: error });
      }
      return { status: 'ready', engine: deps.store.engine };
    },
  );

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  app.get(
    '/metrics',
    {
      schema: {
        tags: ['operations'],
        summary: 'Prometheus metrics',
        description:
          'Open to anyone who can reach Herald, unless `HERALD_METRICS_TOKEN` is set: then it takes ' +
          '`Authorization: Bearer <that token>` (Prometheus: `authorization: {credentials: ...}`).',
        hide: false,
        response: {
          200: {
            description: 'The Prometheus text exposition format (version 0.0.4)',
            content: { 'text/plain': { schema: Type.String() } },
          },
        },
      },
    },
    async (request, reply) => {
      if (isMetricsToken !== undefined && !isMetricsToken(bearerToken(request.headers.authorization) ?? '')) {
        throw new HeraldError('unauthorized', 'Send the metrics token as "Authorization: Bearer <token>"');
      }
      return reply.type(deps.metrics.registry.contentType).send(await deps.metricsText());
    },
  );
}
