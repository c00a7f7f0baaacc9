import { Type } from 'typebox';
import { auditAdmin } from '../audit/audit.repo.ts';
import type { AnnouncementRow } from '../db/tables.ts';
import type { App, Deps } from '../deps.ts';
import { HeraldError, invalid, notFound } from '../errors.ts';
import { insertEvents } from '../events/events.repo.ts';
import { toTime } from '../http/formats.ts';
import { decodeCursor, Page, PageQuery, toPage } from '../http/pagination.ts';
import { Deleted, security } from '../http/schemas.ts';
import { newId } from '../ids.ts';
import {
  announcementEvent,
  findAnnouncement,
  insertAnnouncement,
  LIVE,
  listAnnouncements,
} from './announcements.repo.ts';
import { Announcement, AnnouncementBody, presentAnnouncement, Status } from './announcements.schema.ts';
import { type Audience, assertAudienceExists, checkAudience, countAudience } from './audience.ts';

const tags = ['announcements'];
const Params = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });

/**
 * Admin API for announcements: a message to a segment of the directory, published now or at `publish_at`
 * into every member's inbox, and taken out again when it expires or is cancelled.
 */
export async function announcementsRoutes(app: App, deps: Deps): Promise<void> {
  const admin = deps.auth.require('admin');
  const db = deps.store.db;

  app.post(
    '/announcements',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Announce something to a segment of the directory, now or at publish_at',
        description:
          'Answers at once; the fan-out (one inbox notification per member, type `herald.announcement`) runs ' +
          'in the background, and `progress` on `GET /v1/announcements/{id}` shows how far it got.',
        body: AnnouncementBody,
        response: { 201: Announcement },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const audience = body.audience as Audience;
      checkAudience(audience);
      const now = deps.clock.now();
      const publishAt = body.publish_at === undefined ? now : toTime(body.publish_at, 'body.publish_at');
      const expiresAt = body.expires_at === undefined ? null : toTime(body.expires_at, 'body.expires_at');
      if (expiresAt !== null && expiresAt <= Math.max(publishAt, now)) {
        throw invalid('body.expires_at', 'must be later than publish_at and than now');
      }
      await assertAudienceExists(db, audience);
      const total = await countAudience(db, audience);
      const immediate = publishAt <= now;
      const id = newId('ann', now);
      const row: AnnouncementRow = {
        id,
        event_id: newId('evt', now),
        // Published now: the audience was just counted, so the fan-out starts without counting again.
        status: immediate ? 'publishing' : 'scheduled',
        audience: JSON.stringify(audience),
        title: body.title,
        body: body.body,
        url: body.url ?? null,
        severity: body.severity ?? 'info',
        publish_at: publishAt,
        expires_at: expiresAt,
        total,
        delivered: 0,
        removed: 0,
        cursor: null,
        due_at: immediate ? now : publishAt,
        locked_until: 0,
        created_at: now,
        updated_at: now,
        published_at: null,
        ended_at: null,
      };
      await db.transaction().execute(async (trx) => {
        await insertEvents(trx, [announcementEvent(row, now)]);
        await insertAnnouncement(trx, row);
        await auditAdmin(trx, now, 'announcement.created', ['announcement', id], {
          audience,
          title: row.title,
          publish_at: publishAt,
          expires_at: expiresAt,
          total,
        });
      });
      deps.store.notifier.publish('announcements', '');
      reply.code(201);
      return presentAnnouncement(row);
    },
  );

  app.get(
    '/announcements',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'List announcements, newest first',
        querystring: Type.Object({ status: Type.Optional(Status), ...PageQuery }),
        response: { 200: Page(Announcement) },
      },
    },
    async (request) => {
      const { status, limit = 50, cursor } = request.query;
      const rows = await listAnnouncements(db, { status, before: decodeCursor(cursor), limit });
      return toPage(rows, limit, (row) => row.id, presentAnnouncement);
    },
  );

  app.get(
    '/announcements/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Get an announcement with its progress (updated as each chunk of the fan-out commits)',
        params: Params,
        response: { 200: Announcement },
      },
    },
    async (request) => {
      const row = await findAnnouncement(db, request.params.id);
      if (row === undefined) throw notFound('Announcement', request.params.id);
      return presentAnnouncement(row);
    },
  );

  const cancel = async (id: string): Promise<AnnouncementRow> => {
    const now = deps.clock.now();
    const cancelled = await db.transaction().execute(async (trx) => {
      // One conditional update: on PostgreSQL it waits for a fan-out step holding the row, then sees its result.
      const updated = await trx
        .updateTable('announcements')
        .set({ status: 'cancelled', cursor: null, due_at: now, ended_at: now, updated_at: now })
        .where('id', '=', id)
        .where('status', 'in', [...LIVE])
        .returningAll()
        .executeTakeFirst();
      if (updated !== undefined) {
        await auditAdmin(trx, now, 'announcement.cancelled', ['announcement', id], {
          delivered: updated.delivered,
        });
      }
      return updated;
    });
    if (cancelled !== undefined) {
      deps.store.notifier.publish('announcements', '');
      return cancelled;
    }
    const row = await findAnnouncement(db, id);
    if (row === undefined) throw notFound('Announcement', id);
    if (row.status === 'expired') {
      throw new HeraldError('conflict', `Announcement "${id}" has already expired and left inboxes`);
    }
    return row;
  };

  app.post(
    '/announcements/:id/cancel',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Cancel an announcement: it is not published, or leaves the inboxes it reached',
        params: Params,
        response: { 200: Announcement },
      },
    },
    async (request) => presentAnnouncement(await cancel(request.params.id)),
  );

  app.delete(
    '/announcements/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Cancel an announcement (as POST .../cancel); it stays listed as cancelled',
        params: Params,
        response: { 204: Deleted },
      },
    },
    async (request, reply) => {
      await cancel(request.params.id);
      return reply.code(204).send(null);
    },
  );
}
