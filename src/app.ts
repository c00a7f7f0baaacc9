import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyBaseLogger, type FastifyRequest, LogController } from 'fastify';
import { actionsRoutes } from './actions/actions.routes.ts';
import { announcementsRoutes } from './announcements/announcements.routes.ts';
import { Publisher } from './announcements/publisher.ts';
import { auditRoutes } from './audit/audit.routes.ts';
import { createCredential, hasLiveAdminCredential } from './auth/credentials.repo.ts';
import { devicesRoutes } from './channels/devices.routes.ts';
import { providersRoutes } from './channels/providers.routes.ts';
import { type Clock, systemClock } from './clock.ts';
import type { Config } from './config.ts';
import type { Context } from './context.ts';
import { openStore, type Store } from './db/engine.ts';
import { releaseStaleLeases } from './db/leases.ts';
import { migrateToLatest } from './db/migrate.ts';
import { Dispatcher } from './delivery/dispatcher.ts';
import { endpointsRoutes } from './delivery/endpoints.routes.ts';
import { replayRoutes } from './delivery/replay.routes.ts';
import type { App, Deps } from './deps.ts';
import { groupsRoutes } from './directory/groups.routes.ts';
import { usersRoutes } from './directory/users.routes.ts';
import { escalationRoutes, escalationTimerHandlers } from './escalation/escalation.ts';
import { eventsRoutes } from './events/events.routes.ts';
import { Ingestor } from './events/ingest.ts';
import { Authenticator } from './http/auth.ts';
import { openApiDocument } from './http/openapi.ts';
import { frameworkErrors, installErrorHandling } from './http/problem.ts';
import { validatorCompiler } from './http/validation.ts';
import { createMetrics } from './metrics.ts';
import { noiseRoutes, noiseTimerHandlers } from './noise/noise.ts';
import { TimerWorker } from './noise/timers.ts';
import { InboxHub } from './notifications/hub.ts';
import { inboxRoutes } from './notifications/inbox.routes.ts';
import { redactAccessToken } from './notifications/stream.ts';
import { tokensRoutes } from './notifications/tokens.routes.ts';
import { opsRoutes } from './ops/ops.routes.ts';
import { preferencesRoutes } from './preferences/preferences.routes.ts';
import { unsubscribeRoutes } from './preferences/unsubscribe.routes.ts';
import { queuesRoutes } from './queues/queues.routes.ts';
import { Router } from './routing/router.ts';
import { rulesRoutes } from './routing/rules.routes.ts';
import { sourcesRoutes } from './sources/sources.routes.ts';
import { subscriptionsRoutes } from './subscriptions/subscriptions.routes.ts';
import { templatesRoutes } from './templates/templates.routes.ts';

export interface HeraldOptions {
  config: Config;
  clock?: Clock;
  /** An already open store (tests pass one per engine); otherwise opened from `config.databaseUrl`. */
  store?: Store;
  /** A pino logger instance or options; defaults to JSON logs at `config.logLevel`. */
  logger?: FastifyBaseLogger;
}

export interface Herald {
  readonly app: App;
  readonly deps: Deps;
  /** Set when no admin token was configured and none existed: the one generated now, to print once. */
  readonly generatedAdminToken: string | undefined;
  /** Starts the background workers (routing, delivery, inbox fan-out). */
  startWorkers(): void;
  /** Graceful shutdown: stop taking requests, finish in-flight work, close the database. */
  close(): Promise<void>;
}

// Secrets never reach the logs: credentials in headers and secrets in bodies are redacted.
const REDACT = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["idempotency-key"]',
  '*.secret',
  '*.api_key',
  '*.token',
  '*.password',
];

/** A request as logged; the inbox stream's `?access_token=` (for browsers' EventSource) is masked. */
function logRequest(request: FastifyRequest) {
  return {
    method: request.method,
    url: redactAccessToken(request.url),
    host: request.host,
    remoteAddress: request.ip,
  };
}

/** Builds Herald: the Fastify app (not listening) and its workers (not started). */
export async function buildHerald(options: HeraldOptions): Promise<Herald> {
  const { config } = options;
  const clock = options.clock ?? systemClock;
  const app = Fastify({
    loggerInstance: options.logger,
    logger: options.logger
      ? undefined
      : {
          level: config.logLevel,
          redact: { paths: REDACT, censor: '[redacted]' },
          serializers: { req: logRequest },
        },
    bodyLimit: config.bodyLimitBytes,
    // Requests are logged at debug level and below; at info, only what Herald itself reports.
    logController: new LogController({
      disableRequestLogging: !['debug', 'trace'].includes(config.logLevel),
    }),
    return503OnClosing: true,
    frameworkErrors,
  }).withTypeProvider<TypeBoxTypeProvider>();
  const store =
    options.store ?? openStore(config.databaseUrl, { onError: (e) => app.log.error({ err: e }, 'database') });
  await migrateToLatest(store.db, store.engine);
  await releaseStaleLeases(store);

  let generatedAdminToken: string | undefined;
  if (config.adminToken === undefined && !(await hasLiveAdminCredential(store.db))) {
    const created = await createCredential(store.db, {
      kind: 'admin',
      ownerId: null,
      name: 'initial',
      now: clock.now(),
    });
    generatedAdminToken = created.token;
  }

  const ctx: Context = { config, store, clock, log: app.log, metrics: createMetrics() };
  const hub = new InboxHub(ctx);
  const router = new Router(ctx);
  const dispatcher = new Dispatcher(ctx);
  const publisher = new Publisher(ctx);
  const timers = new TimerWorker(ctx, noiseTimerHandlers(store), escalationTimerHandlers(store));
  const deps: Deps = {
    ...ctx,
    auth: new Authenticator(ctx),
    ingest: new Ingestor(ctx),
    router,
    dispatcher,
    hub,
    announcements: publisher,
    timers,
  };

  app.setValidatorCompiler(validatorCompiler);
  installErrorHandling(app);
  await app.register(swagger, openApiDocument(config));
  await app.register(swaggerUi, { routePrefix: '/docs' });
  await app.register(
    async (v1) => {
      for (const routes of [
        sourcesRoutes,
        usersRoutes,
        groupsRoutes,
        queuesRoutes,
        rulesRoutes,
        eventsRoutes,
        inboxRoutes,
        actionsRoutes,
        tokensRoutes,
        endpointsRoutes,
        replayRoutes,
        providersRoutes,
        devicesRoutes,
        auditRoutes,
        templatesRoutes,
        preferencesRoutes,
        subscriptionsRoutes,
        unsubscribeRoutes,
        announcementsRoutes,
        noiseRoutes,
        escalationRoutes,
      ]) {
        // Each module in its own scope: content-type parsers and hooks stay where they are declared.
        await v1.register(async (scope) => routes(scope as App, deps));
      }
    },
    { prefix: '/v1' },
  );
  await opsRoutes(app, deps);

  let started = false;
  let closing: Promise<void> | undefined;
  return {
    app,
    deps,
    generatedAdminToken,
    startWorkers() {
      if (started) return;
      started = true;
      hub.start();
      router.start();
      dispatcher.start();
      publisher.start();
      timers.start();
    },
    close() {
      closing ??= (async () => {
        hub.close();
        await app.close();
        await deps.ingest.close();
        await router.stop();
        await dispatcher.stop();
        await publisher.stop();
        await timers.stop();
        if (options.store === undefined) await store.close();
      })();
      return closing;
    },
  };
}
