import { Type } from 'typebox';
import { iso } from '../clock.ts';
import type { App, Deps } from '../deps.ts';
import { HeraldError } from '../errors.ts';
import { toTime } from '../http/formats.ts';
import { decodeCursor, PageQuery, toPage } from '../http/pagination.ts';
import { listAudit } from './audit.repo.ts';

const Entry = Type.Object({
  id: Type.Integer(),
  at: Type.String(),
  actor: Type.String(),
  action: Type.String(),
  subject_type: Type.String(),
  subject_id: Type.String(),
  data: Type.Unknown(),
});

/** `GET /audit`: the append-only record of everything Herald did, newest first, with filters. */
export async function auditRoutes(app: App, deps: Deps): Promise<void> {
  app.get(
    '/audit',
    {
      preHandler: deps.auth.require('admin'),
      schema: {
        tags: ['audit'],
        summary: 'Audit entries, newest first',
        security: [{ bearer: [] }],
        querystring: Type.Object({
          ...PageQuery,
          action: Type.Optional(
            Type.String({ maxLength: 100, description: 'Exact, or a prefix ending in `.*`' }),
          ),
          actor: Type.Optional(Type.String({ maxLength: 200 })),
          subject_type: Type.Optional(Type.String({ maxLength: 50 })),
          subject_id: Type.Optional(Type.String({ maxLength: 200 })),
          since: Type.Optional(Type.String({ format: 'date-time' })),
          until: Type.Optional(Type.String({ format: 'date-time' })),
        }),
        response: {
          200: Type.Object({
            items: Type.Array(Entry),
            next_cursor: Type.Union([Type.String(), Type.Null()]),
          }),
        },
      },
    },
    async (request) => {
      const q = request.query;
      const limit = q.limit ?? 50;
      const cursor = decodeCursor(q.cursor);
      if (cursor !== undefined && !/^\d+$/.test(cursor)) throw new HeraldError('bad_cursor');
      const rows = await listAudit(deps.store.db, {
        limit,
        ...(q.action ? { action: q.action } : {}),
        ...(q.actor ? { actor: q.actor } : {}),
        ...(q.subject_type ? { subjectType: q.subject_type } : {}),
        ...(q.subject_id ? { subjectId: q.subject_id } : {}),
        ...(q.since ? { since: toTime(q.since, 'query.since') } : {}),
        ...(q.until ? { until: toTime(q.until, 'query.until') } : {}),
        ...(cursor !== undefined ? { before: Number(cursor) } : {}),
      });
      return toPage(
        rows,
        limit,
        (r) => String(r.id),
        (r) => ({
          id: Number(r.id),
          at: iso(r.at),
          actor: r.actor,
          action: r.action,
          subject_type: r.subject_type,
          subject_id: r.subject_id,
          data: r.data === null ? null : JSON.parse(r.data),
        }),
      );
    },
  );
}
