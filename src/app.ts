import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyBaseLogger, type FastifyRequest, LogController } from 'fastify';
import { actionsRoutes } from './actions/actions.routes.ts';
import { announcementsRoutes } from './announcements/announcements.routes.ts';
import { auditRoutes } from './audit/audit.routes.ts';
import { createCredential, hasLiveAdminCredential } from './auth/credentials.repo.ts';
import { devicesRoutes } from './channels/devices.routes.ts';
import { providersRoutes } from './channels/providers.routes.ts';
import { smsStatusRoutes } from './channels/sms-status.routes.ts';
import { type Clock, systemClock } from './clock.ts';
import type { Config } from './config.ts';
import type { Context } from './context.ts';
import { openStore, type Store } from './db/engine.ts';
import { releaseStaleLeases } from './db/leases.ts';
import { migrateToLatest } from './db/migrate.ts';
import { threadLockMemory } from './db/sqlite-shared.ts';
import { endpointsRoutes } from './delivery/endpoints.routes.ts';
import { replayRoutes } from './delivery/replay.routes.ts';
import type { App, Deps } from './deps.ts';
import { groupsRoutes } from './directory/groups.routes.ts';
import { usersRoutes } from './directory/users.routes.ts';
import { escalationRoutes } from './escalation/escalation.ts';
import { eventsRoutes } from './events/events.routes.ts';
import { Ingestor } from './events/ingest.ts';
import { Authenticator } from './http/auth.ts';
import { installJsonParser } from './http/json.ts';
import { openApiDocument } from './http/openapi.ts';
import { frameworkErrors, installErrorHandling } from './http/problem.ts';
import { validatorCompiler } from './http/validation.ts';
import { logOptions } from './log.ts';
import { createMetrics, exposition } from './metrics.ts';
import { noiseRoutes } from './noise/noise.ts';
import { InboxHub } from './notifications/hub.ts';
import { inboxRoutes } from './notifications/inbox.routes.ts';
import { redactAccessToken } from './notifications/stream.ts';
import { tokensRoutes } from './notifications/tokens.routes.ts';
import { opsRoutes } from './ops/ops.routes.ts';
import { preferencesRoutes } from './preferences/preferences.routes.ts';
import { unsubscribeRoutes } from './preferences/unsubscribe.routes.ts';
import { queuesRoutes } from './queues/queues.routes.ts';
import { rulesRoutes } from './routing/rules.routes.ts';
import { sourcesRoutes } from './sources/sources.routes.ts';
import { subscriptionsRoutes } from './subscriptions/subscriptions.routes.ts';
import { templatesRoutes } from './templates/templates.routes.ts';
import { WorkersThread } from './workers/thread.ts';
import { type WorkerShare, Workers } from './workers/workers.ts';

export interface HeraldOptions {
  config: Config;
  clock?: Clock;
  /** An already open store (tests pass one per engine); otherwise opened from `config.databaseUrl`. */
  store?: Store;
  /** A pino logger instance or options; defaults to JSON logs at `config.logLevel`. */
  logger?: FastifyBaseLogger;
  /**
   * Run the background workers in worker threads of their own (`herald serve`; `config.workerThreads` of them),
   * so that HTTP and background work each get a core. Without it (tests), they are built in this thread, as
   * `Herald.workers`, to start or drive pass by pass. Needs a database other threads can open: a SQLite file or
   * PostgreSQL, opened here.
   */
  threaded?: boolean;
}

export interface Herald<W extends Workers | undefined = Workers> {
  readonly app: App;
  readonly deps: Deps;
  /** The background workers, when they run in this thread. */
  readonly workers: W;
  /** Set when no admin token was configured and none existed: the one generated now, to print once. */
  readonly generatedAdminToken: string | undefined;
  /** Starts the inbox fan-out and the background workers (routing, delivery, announcements, timers). */
  startWorkers(): Promise<void>;
  /** Graceful shutdown: stop taking requests, finish in-flight work, close the database. */
  close(): Promise<void>;
}

/** A request as logged; the inbox stream's `?access_token=` (for browsers' EventSource) is masked. */
function logRequest(request: FastifyRequest) {
  return {
    method: request.method,
    url: redactAccessToken(request.url),
    host: request.host,
    remoteAddress: request.ip,
  };
}

/**
 * A workers' thread ended without being asked to: Herald cannot route or deliver without it. Like an
 * uncaught error in a single-threaded server, it ends the process, to be restarted by its supervisor;
 * everything accepted is in the database and is picked up again.
 */
function onThreadDeath(app: App, error: Error): void {
  app.log.fatal({ err: error }, "a workers' thread died; Herald stops");
  process.exit(1);
}

/** Builds Herald: the Fastify app (not listening) and its workers (not started). */
export async function buildHerald(options: HeraldOptions & { threaded: true }): Promise<Herald<undefined>>;
export async function buildHerald(options: HeraldOptions & { threaded?: false }): Promise<Herald>;
export async function buildHerald(options: HeraldOptions): Promise<Herald<Workers | undefined>> {
  const { config } = options;
  const threaded = options.threaded === true;
  if (threaded && (options.store !== undefined || config.databaseUrl === ':memory:'))
    throw new Error(
      "workers' threads need a database they can open themselves (a SQLite file or PostgreSQL)",
    );
  const clock = options.clock ?? systemClock;
  const app = Fastify({
    loggerInstance: options.logger,
    logger: options.logger ? undefined : { ...logOptions(config), serializers: { req: logRequest } },
    bodyLimit: config.bodyLimitBytes,
    // Requests are logged at debug level and below; at info, only what Herald itself reports.
    logController: new LogController({
      disableRequestLogging: !['debug', 'trace'].includes(config.logLevel),
    }),
    return503OnClosing: true,
    frameworkErrors,
  }).withTypeProvider<TypeBoxTypeProvider>();
  const threadLock = threaded ? threadLockMemory() : undefined;
  const store =
    options.store ??
    openStore(config.databaseUrl, {
      threadLock,
      checkpointer: threaded,
      // Requests write before background work: a publisher waiting for its 202 does not queue behind routing.
      firstInLine: threaded,
      onError: (e) => app.log.error({ err: e }, 'database'),
    });
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
  const workers = threaded ? undefined : new Workers(ctx);
  const threads: WorkersThread[] = [];
  const deps: Deps = {
    ...ctx,
    auth: new Authenticator(ctx),
    ingest: new Ingestor(ctx),
    hub,
    metricsText: async () => exposition(ctx.metrics, await Promise.all(threads.map((t) => t.metrics()))),
  };

  app.setValidatorCompiler(validatorCompiler);
  installJsonParser(app);
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
        smsStatusRoutes,
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

  let started: Promise<void> | undefined;
  let closing: Promise<void> | undefined;
  return {
    app,
    deps,
    workers,
    generatedAdminToken,
    startWorkers() {
      started ??= (async () => {
        hub.start();
        if (workers !== undefined) workers.start();
        else {
          // Started together (each loads Herald's modules); those that did start are kept, for close() to stop.
          const shares: WorkerShare[] = config.workerThreads === 2 ? ['routing', 'delivery'] : ['all'];
          const starts = await Promise.allSettled(
            shares.map((share) =>
              WorkersThread.start({ config, threadLock, share }, (error) => onThreadDeath(app, error)),
            ),
          );
          for (const start of starts) if (start.status === 'fulfilled') threads.push(start.value);
          const failed = starts.find((start) => start.status === 'rejected');
          if (failed !== undefined) throw failed.reason;
        }
      })();
      return started;
    },
    close() {
      closing ??= (async () => {
        hub.close();
        await app.close();
        await deps.ingest.close();
        await started?.catch(() => {});
        await workers?.stop();
        await Promise.all(threads.map((t) => t.stop()));
        if (options.store === undefined) await store.close();
      })();
      return closing;
    },
  };
}
