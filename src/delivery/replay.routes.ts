import { Type } from 'typebox';
import { auditAdmin } from '../audit/audit.repo.ts';
import type { App, Deps } from '../deps.ts';
import { HeraldError, notFound } from '../errors.ts';
import { toTime } from '../http/formats.ts';
import { decodeCursor, Page, PageQuery, toPage } from '../http/pagination.ts';
import { security } from '../http/schemas.ts';
import {
  attemptsOf,
  type DeliverySearch,
  findAnyDelivery,
  listDeliveries,
  reopenDelivery,
  replayDeliveries,
} from './deliveries.repo.ts';
import { presentDelivery, presentEventDelivery } from './endpoints.present.ts';
import { Attempt, DeliveryStatus, EventDelivery } from './endpoints.schema.ts';

const tags = ['deliveries'];
const Time = Type.String({ format: 'date-time' });
const Channel = Type.String({
  minLength: 1,
  maxLength: 32,
  description: '`webhook`, `slack`, `teams`, `email`, `push`, `sms`',
});
const AnyDelivery = Type.Object({ ...EventDelivery.properties, attempts: Type.Array(Attempt) });

const Search = {
  status: Type.Optional(DeliveryStatus),
  channel: Type.Optional(Channel),
  endpoint_id: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  user_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  since: Type.Optional(Time),
  until: Type.Optional(Time),
};

function search(q: {
  status?: DeliverySearch['status'];
  channel?: string;
  endpoint_id?: string;
  user_id?: string;
  since?: string;
  until?: string;
}): DeliverySearch {
  return {
    status: q.status,
    channel: q.channel,
    endpointId: q.endpoint_id,
    userId: q.user_id,
    since: q.since === undefined ? undefined : toTime(q.since, 'since'),
    until: q.until === undefined ? undefined : toTime(q.until, 'until'),
  };
}

/**
 * Deliveries across every channel: the dead letter list (`status=dead`), one delivery with its attempts, and
 * replay of one or many (all dead since a time, per endpoint or channel).
 */
export async function replayRoutes(app: App, deps: Deps): Promise<void> {
  const admin = deps.auth.require('admin');
  const db = deps.store.db;

  app.get(
    '/deliveries',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'List deliveries on every channel, newest first; `status=dead` lists the dead letters',
        querystring: Type.Object({ ...Search, ...PageQuery }),
        response: { 200: Page(AnyDelivery) },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 50;
      const rows = await listDeliveries(db, {
        ...search(request.query),
        before: decodeCursor(request.query.cursor),
        limit: limit + 1,
      });
      const attempts = await attemptsOf(
        db,
        rows.slice(0, limit).map((r) => r.id),
      );
      return toPage(
        rows,
        limit,
        (r) => r.id,
        (r) => ({ ...presentEventDelivery(r), ...presentDelivery(r, attempts.get(r.id) ?? []) }),
      );
    },
  );

  app.get(
    '/deliveries/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Get one delivery with its attempts',
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) }),
        response: { 200: AnyDelivery },
      },
    },
    async (request) => {
      const row = await findAnyDelivery(db, request.params.id);
      if (row === undefined) throw notFound('Delivery', request.params.id);
      const attempts = await attemptsOf(db, [row.id]);
      return { ...presentEventDelivery(row), ...presentDelivery(row, attempts.get(row.id) ?? []) };
    },
  );

  app.post(
    '/deliveries/:id/replay',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Attempt a finished delivery (dead, cancelled or succeeded) once more, now',
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) }),
        response: { 202: AnyDelivery },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const now = deps.clock.now();
      const row = await db.transaction().execute(async (trx) => {
        const delivery = await findAnyDelivery(trx, id);
        if (delivery === undefined) throw notFound('Delivery', id);
        if (delivery.endpoint_id !== null) {
          const endpoint = await trx
            .selectFrom('endpoints')
            .select('status')
            .where('id', '=', delivery.endpoint_id)
            .executeTakeFirst();
          if (endpoint?.status !== 'enabled') {
            throw new HeraldError(
              'conflict',
              `Endpoint "${delivery.endpoint_id}" is disabled or gone; enable it before replaying`,
            );
          }
        }
        const reopened = await reopenDelivery(trx, id, now);
        if (reopened === undefined) throw new HeraldError('conflict', `Delivery "${id}" is pending already`);
        await auditAdmin(trx, now, 'delivery.replay_requested', ['delivery', id], {
          channel: delivery.channel,
          event_id: delivery.event_id,
          previous_status: delivery.status,
        });
        return reopened;
      });
      deps.store.notifier.publish('deliveries', '');
      reply.code(202);
      return { ...presentEventDelivery(row), ...presentDelivery(row, []) };
    },
  );

  app.post(
    '/deliveries/replay',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary:
          'Replay many finished deliveries: by default every dead one, narrowed by time, endpoint or channel',
        body: Type.Object(
          {
            ...Search,
            status: Type.Optional(
              Type.Union([Type.Literal('dead'), Type.Literal('cancelled'), Type.Literal('succeeded')], {
                default: 'dead',
              }),
            ),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000, default: 10_000 })),
          },
          { additionalProperties: false },
        ),
        response: {
          202: Type.Object({
            replayed: Type.Integer(),
            ids: Type.Array(Type.String(), { description: 'The first 100' }),
          }),
        },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const now = deps.clock.now();
      const filter = search({ ...body, status: body.status ?? 'dead' });
      const ids = await db.transaction().execute(async (trx) => {
        const replayed = await replayDeliveries(trx, filter, body.limit ?? 10_000, now);
        await auditAdmin(trx, now, 'deliveries.replay_requested', ['delivery', '*'], {
          filter: body,
          replayed: replayed.length,
        });
        return replayed;
      });
      if (ids.length > 0) deps.store.notifier.publish('deliveries', '');
      reply.code(202);
      return { replayed: ids.length, ids: ids.slice(0, 100) };
    },
  );
}
